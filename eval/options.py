"""`EvalOptions`: every setting of one evaluation, shared by `evaluate()`, the metric registry and the CLI.

A plain dataclass so that an unknown keyword is an error (see `evaluate`), and the JSON's `settings`
is simply its fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganplug.errors import UserError

DEFAULT_METRICS = ("fid", "kid", "is", "pr", "dc", "swd", "msssim", "vendi")
IS_SPLIT_ORDERS = ("consecutive", "shuffled")

# Options that only change one metric: given while none of their metrics is requested, they would be silently
# ignored, so `check_metric_options` refuses them. field -> (CLI flag, the metrics it applies to)
METRIC_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "is_split_order": ("--is-split-order", ("is",)),
}


@dataclass
class EvalOptions:
    # None: the default set, where a metric that cannot run (no network file, no REAL) is skipped with a
    # visible reason; metrics named explicitly must all run, or the evaluation stops (exit 2) saying why
    metrics: tuple[str, ...] | str | None = None
    explicit_metrics: bool | None = None  # set by resolve_options: were `metrics` named by the caller?
    # fake samples drawn from a generator (at most this many images from folders/datasets); "auto": the
    # documented 10,000 on CUDA, on other devices a count timed to finish in minutes (eval/sizing.py)
    n: int | str = "auto"
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA) | auto; Inception features only
    fid_mode: str = "clean"
    weights_dir: str | None = None
    allow_unverified_weights: bool = False
    batch_size: int = 64
    seed: int = 0  # first generator seed; also seeds subsets, KID, SWD, MS-SSIM pairs
    truncation: float = 1.0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    # IS split order: None (not given) = "consecutive", StyleGAN2-ADA's 10 consecutive chunks in input order;
    # "shuffled" = torch-fidelity's, chunks of a numpy RandomState(seed).permutation (seed: `seed`)
    is_split_order: str | None = None
    # auto (inception if available, else handcrafted) | inception | handcrafted | dinov2 (dinov2_vitl14_pretrain.pth)
    pr_features: str = "auto"
    ppl_samples: int = 2000
    ppl_space: str = "auto"
    ppl_sampling: str = "end"
    ppl_epsilon: float = 1e-4
    swd_images: int = 1024
    msssim_pairs: int = 1000
    cache_dir: str | None = None
    use_cache: bool = True
    workers: int = 2
    save_stats: str | None = None  # write the fake set's Inception mu/sigma here (.npz)
    background: str = "auto"  # transparency: auto (FAKE's training colour) | none (alpha dropped) | a colour
    collapse: bool = False  # mode-collapse verdict + memorisation check (when REAL is images); the CLI's default
    collapse_n: int = 500  # samples judged by the collapse battery (the first of the metric samples)
    collapse_features: str = "handcrafted"  # the battery's feature space: handcrafted | dinov2 (its margins were
    # calibrated on handcrafted-v1; in DINOv2 space they are judged against the same real-vs-real baseline)
    all_checkpoints: bool = False  # with a run folder and collapse: judge every checkpoint, mark the best
    progress: bool = True  # progress bars/lines and the pre-start messages on stderr


def check_metric_options(opts: EvalOptions) -> None:
    """Refuse a metric-specific option that was given (not None) while none of its metrics is requested."""
    if opts.is_split_order is not None and opts.is_split_order not in IS_SPLIT_ORDERS:
        raise UserError(f"--is-split-order must be consecutive or shuffled, not {opts.is_split_order!r}.")
    for name, (flag, users) in METRIC_OPTIONS.items():
        if getattr(opts, name) is not None and not set(users) & set(opts.metrics):
            raise UserError(f"{flag} applies only to {', '.join(users)}, which is not among --metrics "
                            f"({', '.join(opts.metrics)}); add {users[0]} to --metrics or drop {flag}.")
