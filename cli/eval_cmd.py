"""`ganplug eval FAKE --real REAL`: FID, KID, IS, PPL, precision/recall, density/coverage, SWD, MS-SSIM, Vendi."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ganplug.cli import validate as v


def sample_count(value: str | None) -> str | None:
    """`--n`: auto, or a whole number of at least 1 (checked here so the message names the option)."""
    if value is None or value.strip().lower() == "auto":
        return value
    if not value.strip().isdigit() or int(value) < 1:
        raise typer.BadParameter(f"must be auto or a whole number of at least 1, not {value}.")
    return value


def torchrun_argv(argv: list[str]) -> list[str]:
    """The command line with `--n` spelt `--samples`: torchrun's parser takes `--n` for a prefix of its own
    options (--nnodes, --nproc-per-node, ...) and stops, even after `-m ganplug.cli.app`."""
    return ["--samples" if a == "--n" else "--samples=" + a[4:] if a.startswith("--n=") else a for a in argv]


def _fmt(name: str, m: dict) -> str:
    if name == "pr":
        return f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  ({m['feature_space']}, k={m['k']})"
    if name == "dc":
        return f"density {m['density']:.4f}  coverage {m['coverage']:.4f}  ({m['feature_space']}, k={m['k']})"
    text = f"{m['value']:.6g}"
    if m.get("std") is not None:
        text += f" ± {m['std']:.3g}"
    if name == "vendi":
        text += f"  ({m['feature_space']}" + (f"; real {m['real']:.4g})" if m.get("real") is not None else ")")
    if name == "msssim" and m.get("real") is not None:
        text += f"  (real pairs: {m['real']:.4f})"
    if name == "swd":
        text += "  (per level: " + ", ".join(f"{k}px {v:.1f}" for k, v in m["per_level"].items()) + ")"
    if name in ("fd_dinov2", "cmmd"):  # say which network's space the number lives in
        text += f"  ({m['feature_space']})"
    return text


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        fake: Path = typer.Argument(..., help="Run folder, checkpoint, image folder or prepared dataset to judge."),
        real: Path = typer.Option(None, "--real", help="Image folder, prepared dataset or .npz statistics file."),
        metrics: str = typer.Option(None, "--metrics", show_default=False,
                                    help="Comma list of fid,kid,is,ppl,pr,dc,swd,msssim,fd_dinov2,cmmd. Default: all "
                                         "but ppl, fd_dinov2 and cmmd, each "
                                         "one that cannot run skipped with its reason. Metrics named here must all "
                                         "run, or the command stops (exit 2) saying why."),
        n: str = typer.Option("auto", "--n", "--samples", callback=sample_count,
                              help="Samples drawn from a generator (at most this many images): auto = 10000 on "
                                   "CUDA, on a CPU a count timed to finish in about 3 minutes (printed first). "
                                   "Under torchrun write --samples (torchrun reads --n as one of its own options)."),
        json_out: Path = typer.Option(None, "--json", callback=v.output_file,
                                      help="Write the results here (schema ganplug-eval/1)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
        precision: str = typer.Option("fp32", "--precision", help="Inception features in fp32, bf16, fp16 or auto."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
        weights_dir: Path = typer.Option(None, "--weights-dir", help="Folder searched first for network files."),
        allow_unverified: bool = typer.Option(False, "--allow-unverified-weights",
                                              help="Use network files whose hash differs (results marked)."),
        fid_mode: str = typer.Option("clean", "--fid-mode", help="clean (clean-fid) or legacy (TF resize)."),
        batch_size: int = typer.Option(64, "--batch-size", min=1,
                                        help="Images per batch for sampling and feature extraction."),
        seed: int = typer.Option(0, "--seed", callback=v.seed,
                                 help="First generator seed; also seeds subsets, KID and SWD."),
        truncation: float = typer.Option(1.0, "--truncation", callback=v.truncation,
                                         help="Truncation psi for generator samples: 1 = none."),
        kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2,
                                             help="Images per KID subset (seeded; smaller sets use all)."),
        pr_features: str = typer.Option("auto", "--pr-features",
                                        help="auto, inception, handcrafted or dinov2 (dinov2_vitl14_pretrain.pth)."),
        is_split_order: str = typer.Option(None, "--is-split-order", show_default=False,
                                           help="IS splits: consecutive (default; StyleGAN2-ADA) or shuffled "
                                                "(torch-fidelity: permuted with --seed first). Needs is in --metrics."),
        ppl_samples: int = typer.Option(2000, "--ppl-samples", min=2,
                                         help="Latent pairs for perceptual path length."),
        ppl_space: str = typer.Option("auto", "--ppl-space", help="auto (w for style-based, else z), z or w."),
        ppl_sampling: str = typer.Option("end", "--ppl-sampling", help="end or full."),
        save_stats: Path = typer.Option(None, "--save-stats", callback=v.output_file,
                                        help="Write FAKE's Inception mu/sigma (.npz)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the real-feature cache."),
        collapse: bool = typer.Option(True, "--collapse/--no-collapse",
                                      help="Mode-collapse verdict and memorisation check (needs REAL images)."),
        collapse_n: int = typer.Option(500, "--collapse-n", min=10, help="Samples for the collapse check."),
        collapse_features: str = typer.Option("handcrafted", "--collapse-features",
                                              help="Feature space of the collapse check: handcrafted or dinov2."),
        report_out: Path = typer.Option(None, "--report", callback=v.output_file,
                                        help="Write a self-contained HTML report here."),
        all_checkpoints: bool = typer.Option(False, "--all-checkpoints",
                                             help="With a run folder: judge every checkpoint, mark the best."),
        background: str = typer.Option("auto", "--background",
                                       help="Transparent images are composited onto this: auto (the colour FAKE "
                                            "was trained on; alpha dropped otherwise), none (alpha dropped, as "
                                            "clean-fid), white, black, gray or #rrggbb."),
        gpus: int = typer.Option(1, "--gpus", min=1,
                                 help="Share sampling and feature extraction over N processes, one per GPU (with "
                                      "--device cpu, N CPU processes): relaunches itself under torchrun; the "
                                      "results equal one process's."),
    ) -> None:
        """Score a generator or image set against real images; network-free metrics always run."""
        from ganplug.eval.pipeline import evaluate
        from ganplug.train import distributed

        if gpus > 1:
            distributed.relaunch("eval", gpus, device, torchrun_argv(sys.argv[1:]))  # does not return
        try:
            result = evaluate(
                fake, real, json_path=json_out, report_path=report_out, force=force,
                metrics=metrics, n=n if n == "auto" else int(n), precision=precision, device=device,
                weights_dir=str(weights_dir) if weights_dir else None, allow_unverified_weights=allow_unverified,
                fid_mode=fid_mode, batch_size=batch_size, seed=seed, truncation=truncation,
                kid_subset_size=kid_subset_size, pr_features=pr_features, ppl_samples=ppl_samples,
                ppl_space=ppl_space, is_split_order=is_split_order, ppl_sampling=ppl_sampling,
                save_stats=str(save_stats) if save_stats else None, use_cache=not no_cache, background=background,
                collapse=collapse, collapse_n=collapse_n, all_checkpoints=all_checkpoints,
                collapse_features=collapse_features,
            )
        except Exception as e:
            _rank_failed(e)
            raise
        if result is None:  # a rank other than 0 of a multi-process run: rank 0 prints and writes
            return
        _print(result)
        if report_out is not None:
            typer.echo(f"wrote {report_out}")
        if json_out:
            typer.echo(f"wrote {json_out}")


def _rank_failed(e: Exception) -> None:
    """Several processes: the failing rank says so (torchrun stops the others); a user error, which every
    rank meets alike or which rank 0 reports for the rank that met it, is printed by rank 0 alone."""
    from ganplug.errors import UserError
    from ganplug.train import distributed

    w = distributed.world_from_env()
    if not w.distributed:
        return
    if isinstance(e, UserError):
        if not w.main:
            raise typer.Exit(e.exit_code) from None
        return
    if distributed.report_rank_failure(e, "eval", "run it again (nothing was written)"):
        raise typer.Exit(1) from None


def _tag(m: dict) -> str:
    status = m.get("weights")
    return f"  [{status} network file]" if status in ("stand-in", "hash differs") else ""


def _print(result: dict) -> None:
    """The metrics, skips, warnings, notes, then the verdict and copy rate (all read from the result dict)."""
    sc = result.get("sample_count") or {}
    if sc:
        typer.echo(f"n       {sc['n']:,} {'(auto: sized to this machine)' if sc.get('auto') else '(as given)'}")
    for name, m in result["metrics"].items():
        typer.echo(f"{name:7s} {_fmt(name, m)}{_tag(m)}")
    for name, reason in result["skipped"].items():
        typer.echo(f"{name:7s} skipped: {reason}")
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}")
    for note in result["fake"]["notes"] + (result["real"] or {}).get("notes", []) + result["notes"]:
        typer.echo(f"note: {note}")
    if "collapse" not in result:
        return
    v, mem = result["collapse"], result["memorisation"]
    typer.echo(f"verdict {v['verdict']} (severity {v['severity']:.2f})")
    for space, other in result.get("collapse_by_space", {}).items():
        if space != result["feature_space"]:
            typer.echo(f"        in {space} features instead: {other['verdict']} (severity {other['severity']:.2f})")
    if v.get("context"):
        typer.echo(f"        {v['context']}")
    for reason in v["reasons"]:
        typer.echo(f"        {reason}")
    typer.echo(f"copies  {100 * mem['rate']:.1f}% of {mem['samples']} samples are near-copies of REAL images")
    for row in result.get("checkpoints", []):
        typer.echo(f"        {row['checkpoint']}: {row['verdict']} (severity {row['severity']:.2f}, coverage "
                   f"{row['coverage']:.2f}){'  <- best' if row['best'] else ''}")
