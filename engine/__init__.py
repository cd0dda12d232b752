"""Running one DAG of a plan: the supervisor loop, its step semantics and run context."""
