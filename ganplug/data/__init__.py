"""Reading, cleaning, preparing and serving training images."""
