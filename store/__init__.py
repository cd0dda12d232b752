"""State on disk: run folders, the journal, the folded status, retention and disk use."""
