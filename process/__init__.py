"""Process control: spawning in a session, sandboxing, limits and per-step accounting."""
