"""The `ganplug` command (typer). Installed as ganplug.cli; each command group is one module."""
