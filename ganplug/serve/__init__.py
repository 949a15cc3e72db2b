"""The local generation server (`ganplug serve`)."""
