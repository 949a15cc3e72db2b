"""ganplug: train GANs on your own concept art."""

__version__ = "0.1.0"
