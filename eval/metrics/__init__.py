"""One file per metric: features in, numbers out."""
