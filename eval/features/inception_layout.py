"""Moving the weights of a TorchScript Inception file into the eager twin, and proving the twin computes the same.

Two state-dict layouts are accepted:
- "published": NVIDIA's `inception-2015-12-05.pt` (StyleGAN2-ADA, clean-fid). Each conv + batch norm + ReLU
  unit is ONE module holding `weight` [out, in, kh, kw] (the convolution, no bias), `beta`, `mean` and `var`
  [out] (a TF batch norm without scale, eps 1e-3); there is no `num_batches_tracked`. The module paths are the
  twin's (`layers.mixed_4.tower_1.conv_3`, `layers.mixed_9.tower_mixed_conv_1`, ...), plus `output.weight`
  [1008, 2048] and `output.bias` [1008]. Source: the converter that copies the published file into an
  nn.Conv2d + nn.BatchNorm2d re-implementation and checks the features agree, mapping `P.conv.weight <- P.weight`,
  `P.bn.bias <- P.beta`, `P.bn.running_mean <- P.mean`, `P.bn.running_var <- P.var` and skipping
  `bn.weight`/`bn.num_batches_tracked` (github.com/miemie2013/ppgan, convert_weights/inception_convert_weights.py),
  whose author notes from the file's printed `.code` that eps is 0.001 and the batch-norm weight is None.
- "ganplug": the twin's own names (`P.conv.weight`, `P.bn.bias`, `P.bn.running_mean`, ...), which the seeded
  stand-in files (eval/features/standin.py) are written with.

Matching names and shapes is not enough to trust the fast path, so `load_twin` also runs one seeded probe image
through the file's own trunk and the twin's and keeps the twin only when their pool3 features agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganplug.eval.features.inception_arch import INPUT_SIZE, InceptionFID

# published tensor name -> the twin's, within one conv unit
PUBLISHED_UNIT = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
PROBE_TOL = 1e-3  # max |file - twin| pool3 difference, relative to the largest feature (fp32 agrees to ~1e-6)

SLOW_PATH = ("using the slower TorchScript path (about {factor} slower than ganplug's eager twin at this "
             "precision on a CPU: no batch-norm folding, channels_last or bf16; features are the same)")


@dataclass
class TwinMatch:
    """The outcome of fitting a file into the twin: the twin (None when it does not fit), and why."""

    twin: InceptionFID | None
    layout: str | None  # "published" | "ganplug" | None
    reason: str = ""  # why it does not fit (empty when it does)


def _twin_name(key: str, twin_keys: set[str]) -> str | None:
    """Where a published tensor goes in the twin (None: nowhere)."""
    if key in ("output.weight", "output.bias"):
        return key
    prefix, _, leaf = key.rpartition(".")
    name = f"{prefix}.{PUBLISHED_UNIT[leaf]}" if leaf in PUBLISHED_UNIT else None
    return name if name in twin_keys else None


def _layout_state(state: dict[str, torch.Tensor], twin_keys: set[str]) -> tuple[str, dict] | None:
    """("ganplug" | "published", the state under the twin's names), or None when the names do not fit."""
    if set(state) == twin_keys:
        return "ganplug", state
    renamed = {_twin_name(k, twin_keys): v for k, v in state.items()}
    # the twin's batch-norm counters have no published counterpart
    renamed |= {k: torch.zeros((), dtype=torch.long) for k in twin_keys if k.endswith(".num_batches_tracked")}
    if set(renamed) == twin_keys:  # a name with no place in the twin maps to None and breaks this
        return "published", renamed
    return None


def _describe_difference(state: dict[str, torch.Tensor], twin_keys: set[str]) -> str:
    extra = sorted(k for k in state if k not in twin_keys and _twin_name(k, twin_keys) is None)
    if extra:
        more = ", ..." if len(extra) > 3 else ""
        return f"it has tensors the published layout does not ({', '.join(extra[:3])}{more})"
    return f"its tensors do not cover the published layout ({len(state)} tensors)"


def probe_image(seed: int = 0) -> torch.Tensor:
    """A seeded smooth image in [-1, 1] at 299 px, the trunk's normalised input (smooth so features vary)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 9, 9, generator=gen) * 2 - 1
    return F.interpolate(coarse, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False).clamp(-1, 1)


@torch.no_grad()
def trunks_agree(file_layers: torch.nn.Module, twin_layers: torch.nn.Module) -> tuple[bool, float]:
    """Whether both trunks give the same pool3 features on the probe (fp32, CPU), and the relative difference."""
    x = probe_image()
    a = file_layers(x).reshape(1, -1).double()
    b = twin_layers(x).reshape(1, -1).double()
    if a.shape != b.shape or not torch.isfinite(a).all():
        return False, float("inf")
    diff = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
    return diff <= PROBE_TOL, diff


def load_twin(scripted: torch.jit.ScriptModule) -> TwinMatch:
    """The file's weights in the eager twin when the file has a layout the twin knows and computes the same."""
    twin = InceptionFID()
    twin_keys = set(twin.state_dict())
    state = dict(scripted.state_dict())
    fitted = _layout_state(state, twin_keys)
    if fitted is None:
        return TwinMatch(None, None, _describe_difference(state, twin_keys))
    layout, twin_state = fitted
    try:
        twin.load_state_dict(twin_state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        return TwinMatch(None, None, f"its tensor shapes differ from the published ones ({first})")
    twin.eval()
    ok, diff = trunks_agree(scripted.layers, twin.layers)
    if not ok:
        return TwinMatch(None, None, f"its trunk computes something else than the published graph on a probe image "
                                     f"(relative difference {diff:.2g})")
    return TwinMatch(twin, layout)
