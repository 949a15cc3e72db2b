"""`ganplug plugin install krita` and `ganplug plugin build krita|blender`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    plugin = typer.Typer(help="Build or install the Krita plugin and the Blender add-on.", no_args_is_help=True)
    app.add_typer(plugin, name="plugin")

    @plugin.command("build")
    def build(
        name: str = typer.Argument(..., help="krita or blender"),
        out: Path = typer.Option(None, "--out", "-o", help="Zip file or folder (default: dist/)."),
        force: bool = typer.Option(False, help="Overwrite an existing zip."),
    ) -> None:
        """Make the zip that Krita's "Import Python Plugin from File" or Blender's add-on installer takes."""
        from ganplug.serve.plugins import build_plugin

        path = build_plugin(name, out, force=force)
        typer.echo(f"wrote {path}")
        if name == "krita":
            typer.echo("Krita: Tools > Scripts > Import Python Plugin from File..., pick the zip, restart Krita.")
        else:
            typer.echo("Blender: Edit > Preferences > Add-ons > Install..., pick the zip, tick 'ganplug'.")

    @plugin.command("install")
    def install(
        name: str = typer.Argument(..., help="krita"),
        dest: Path = typer.Option(None, help="Krita's pykrita folder (default: this user's)."),
        force: bool = typer.Option(False, help="Replace an installed version."),
    ) -> None:
        """Copy the plugin into Krita's resource folder."""
        from ganplug.errors import UserError
        from ganplug.serve.plugins import install_krita

        if name != "krita":
            raise UserError(f"`plugin install` knows krita only; for {name}, run `ganplug plugin build {name}` "
                            "and install the zip from the application.")
        for path in install_krita(dest, force=force):
            typer.echo(f"installed {path}")
        typer.echo("Restart Krita, enable 'ganplug' in Settings > Configure Krita > Python Plugin Manager, restart "
                   "again, then show it with Settings > Dockers > ganplug.")
