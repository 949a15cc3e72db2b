"""Training: config, losses, penalties, augmentation, EMA and the loop."""
