"""`ganplug weights list|fetch`: where the pretrained network files are, and getting them."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Pretrained network files (Inception, VGG16, LPIPS, DINOv2, CLIP) used by `ganplug eval`.",
                        no_args_is_help=True)

    @group.command("list")
    def list_command(
        weights_dir: Path = typer.Option(None, "--weights-dir",
                                         help="Folder searched first (must be writable only by you)."),
    ) -> None:
        """Show each file: where it was found (and its hash check), why it was refused, or every place searched.

        The system temp folder is never searched; a file other users could have written is refused.
        """
        from ganplug.eval.features.weights import survey

        for row in survey(weights_dir):
            typer.echo(f"{row['key']:15s} {row['file']:26s} {row['status']}")
            typer.echo(f"    used by: {', '.join(row['used_by'])}; expected {row['expected']}")
            if row["found"]:
                typer.echo(f"    found: {row['found']} (sha256 {row['sha256']})")
            else:
                typer.echo("    searched: " + ", ".join(row["searched"]))
                typer.echo(f"    get it: `ganplug weights fetch {row['key']}`, or download {row['url']} and put it "
                           "in one of those folders (writable only by you)")

    @group.command("fetch")
    def fetch_command(
        keys: list[str] = typer.Argument(None, help="inception, vgg16, lpips-vgg16, dinov2-vitl14, clip-vitl14-336 "
                                                    "(default: the first three; the DINOv2 and CLIP files, 1.2 and "
                                                    "0.9 GB, only when named)."),
        dest: Path = typer.Option(None, "--dest",
                                  help="Target folder (default ~/.cache/ganplug); must be writable only by you."),
        force: bool = typer.Option(False, "--force", help="Download again even if present."),
    ) -> None:
        """Download with hash verification; without internet, says where to put each file."""
        from ganplug.eval.features.weights import KNOWN, WeightsError, fetch

        chosen = keys or [k for k in KNOWN if k in ("inception", "vgg16", "lpips-vgg16")]
        bad = [k for k in chosen if k not in KNOWN]
        if bad:
            raise WeightsError(f"unknown weights {', '.join(bad)}; choose from {', '.join(KNOWN)}.")
        for key in chosen:
            found = fetch(key, dest, force=force)
            state = "verified" if found.verified else "hash not pinned by ganplug"
            typer.echo(f"{key}: {found.path} (sha256 {found.sha256}, {state})")

    app.add_typer(group, name="weights")
