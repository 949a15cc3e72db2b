"""The `ganplug` typer app: one module per command group, each exposing `register(app)`.

The CLI only parses arguments and calls the library. A `UserError` raised anywhere below becomes a
one-paragraph message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from ganplug import __version__
from ganplug.errors import UserError

# Command modules under ganplug.cli, in the order their commands appear in --help.
COMMAND_MODULES = [
    "prep_cmd",
    "train_cmd",
    "generate_cmd",
    "demo_cmd",
    "serve_cmd",
    "plugin_cmd",
    "eval_cmd",
    "weights_cmd",
    "latent_cmd",
]

app = typer.Typer(
    name="ganplug",
    help="Train GANs on your own concept art, sample them, evaluate them, and serve them to Krita and Blender.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ganplug {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """ganplug: concept-art GANs from your own asset library."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"ganplug.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the app, turning user errors into exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        # Newer typer releases vendor click as typer._click; match the class by name so both kinds are caught.
        if any(c.__name__ == "ClickException" for c in type(e).__mro__):
            e.show()
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
