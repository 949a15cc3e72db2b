"""Feature extractors (Inception, VGG16/LPIPS, network-free) and weight discovery."""
