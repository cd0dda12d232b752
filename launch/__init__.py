"""How a run gets its supervisor process (fork from the zygote, spawn; later a remote worker)."""
