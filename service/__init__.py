"""The one API that the CLI, the scheduler, the web and the workers call to act on and read runs."""
