"""The `ganplug` typer app: one module per command group, each exposing `register(app)`.

The CLI only parses arguments and calls the library. A `UserError` raised anywhere below becomes a
one-paragraph message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ganplug import __version__
from ganplug.errors import UserError

# Command modules under ganplug.cli, in the order their commands appear in --help.
COMMAND_MODULES = [
    "prep_cmd",
    "train_cmd",
    "generate_cmd",
    "demo_cmd",
    "export_cmd",
    "serve_cmd",
    "plugin_cmd",
    "eval_cmd",
    "weights_cmd",
    "latent_cmd",
    "bench_cmd",
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


def _usage_line(e: Exception) -> str:
    """A click usage error (bad option value, unknown option) as one line naming the option, and where help is."""
    text = e.format_message()
    ctx = getattr(e, "ctx", None)
    if ctx is not None:  # the program name is whatever ran us (pytest, python -m); the user typed `ganplug`
        command = " ".join(["ganplug", *ctx.command_path.split(" ")[1:]])
        text = f"{text.rstrip()} (see `{command} --help`)"
    return text


def command():
    """The click command tree of the app, with plain flags (`--force`, `--collapse/--no-collapse`) showing no
    value type in --help: typer 0.29 prints `<bool>` beside them, as if they took a value."""
    cmd = typer.main.get_command(app)
    for sub in (cmd, *getattr(cmd, "commands", {}).values(), *_subcommands(cmd)):
        for param in sub.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        sub.get_help_option = _flag_without_type(sub.get_help_option)  # --help is made per call
    return cmd


def _subcommands(cmd) -> list:
    return [c for group in getattr(cmd, "commands", {}).values() for c in getattr(group, "commands", {}).values()]


def _flag_without_type(make):
    def get_help_option(ctx):
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return get_help_option


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the app, turning user errors into exit code 2."""
    try:
        code = command()(args=argv, standalone_mode=False)
    except UserError as e:
        # escaped: a message may hold brackets (`pip install 'ganplug[serve]'`) that are not markup
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
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
            err_console.print(f"[bold red]error:[/] {escape(_usage_line(e))}", highlight=False, soft_wrap=True)
            return 2
        raise
    # non-standalone click returns a command's `typer.Exit(code)` as its value instead of raising it
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
