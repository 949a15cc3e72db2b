"""Model families: one file each, registered by name."""
