"""Checkpoints: safetensors tensors plus one JSON document in the safetensors metadata. Never pickle.

A checkpoint file holds the generator, its EMA copy, the discriminator, both optimiser states and the
RNG states, so a run resumes exactly; inference reads only the `G_ema.` tensors (safetensors loads
lazily by name). Files are written to a temporary name, fsynced and renamed, and only then does the
`latest` pointer move, so killing the process at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

from ganplug import __version__
from ganplug.atomic import atomic_write_bytes
from ganplug.errors import CheckpointError, UserError
from ganplug.models import build_models, config_from_dict
from ganplug.models.registry import ModelSpec, check_budget

FORMAT = "ganplug-checkpoint"
FORMAT_VERSION = 1
META_KEY = "ganplug"
CKPT_DIR = "checkpoints"
LATEST = "latest"
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")


# ----------------------------------------------------------------------------- writing


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into tensors (for safetensors) and JSON (everything else)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    head = prefix + ".state."
    for name, value in tensors.items():
        if name.startswith(head):
            idx, key = name[len(head) :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": info["param_groups"]}


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}.safetensors"


def save_training_checkpoint(
    run_dir: Path,
    *,
    step: int,
    G: nn.Module,
    D: nn.Module,
    G_ema: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    meta: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write RUN/checkpoints/step-NNNNNN.safetensors atomically, then move the `latest` pointer.

    `meta` must hold at least `arch`, `model` (the family config as a dict) and `train` (the run config).
    `keep` > 0 deletes all but the newest `keep` checkpoints afterwards.
    """
    tensors: dict[str, torch.Tensor] = {}
    tensors.update(module_tensors("G", G))
    tensors.update(module_tensors("G_ema", G_ema))
    tensors.update(module_tensors("D", D))
    opt_info = {}
    for name, opt in (("opt_G", opt_G), ("opt_D", opt_D)):
        t, info = _flatten_optimizer(name, opt)
        tensors.update(t)
        opt_info[name] = info
    for name, value in rng.items():
        tensors[f"rng.{name}"] = value.detach().cpu().contiguous()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ganplug_version": __version__,
        "step": step,
        **meta,
        "optimizers": opt_info,
    }
    data = st_save(tensors, metadata={META_KEY: json.dumps(doc)})
    ckpt_dir = Path(run_dir) / CKPT_DIR
    path = ckpt_dir / checkpoint_name(step)
    atomic_write_bytes(path, data)
    atomic_write_bytes(ckpt_dir / LATEST, (path.name + "\n").encode())
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- finding and reading


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: Path | str) -> Path:
    """A checkpoint file as given, or a run folder's latest checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a run folder or a .safetensors checkpoint file.")
    ckpt_dir = path / CKPT_DIR
    pointer = ckpt_dir / LATEST
    found = list_checkpoints(path)
    if pointer.is_file():
        try:
            name = pointer.read_bytes().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            newest = f" (the newest here is {found[-1].name})" if found else ""
            raise CheckpointError(
                f"{pointer} is damaged ({e}); it should hold the name of a checkpoint in {ckpt_dir}. Delete it to "
                f"use the newest checkpoint{newest}, or write one's name into it."
            ) from None
        if _STEP_RE.match(name) and (ckpt_dir / name).is_file():
            return ckpt_dir / name
    if not found:
        raise CheckpointError(
            f"{path} is a folder without checkpoints (expected {ckpt_dir}/step-NNNNNN.safetensors); "
            "is it a ganplug run folder?"
        )
    return found[-1]


# What readers of the document index into, and the JSON kind each must be: a wrong kind fails in read_meta as one
# sentence instead of as a TypeError wherever it is first used.
_META_KINDS = {"arch": "string", "model": "object", "train": "object", "step": "integer", "optimizers": "object"}


def _json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type (a bool is not an integer here, as in JSON)."""
    kinds = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
             (dict, "object"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "null")


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON document of a checkpoint, with clear errors for foreign or damaged files."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is not a readable ganplug checkpoint ({e}); it may be truncated or another program's file. "
            "Expected a .safetensors file written by `ganplug train`."
        ) from e
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a ganplug checkpoint (no '{META_KEY}' metadata).")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{path}: the ganplug metadata is damaged ({e}).") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: the ganplug metadata is a JSON {_json_kind(doc)}, not a JSON object; "
                              "the file is damaged or was not written by `ganplug train`.")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ganplug checkpoint (format {doc.get('format')!r}).")
    version = doc.get("format_version", 0)
    if _json_kind(version) != "integer":
        raise CheckpointError(f"{path}: the ganplug metadata is damaged (format_version is {version!r:.40}, "
                              "not an integer).")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer ganplug ({doc.get('ganplug_version')}); upgrade ganplug to read it."
        )
    for key, kind in _META_KINDS.items():
        if key in doc and _json_kind(doc[key]) != kind:
            raise CheckpointError(f"{path}: the ganplug metadata is damaged ({key!r} is a JSON {_json_kind(doc[key])}, "
                                  f"not a JSON {kind}).")
    return doc


def read_tensors(path: Path, prefixes: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, optionally only those under the given prefixes (e.g. ("G_ema.",))."""
    try:
        with safe_open(str(path), framework="pt") as f:
            names = [k for k in f.keys() if prefixes is None or k.startswith(prefixes)]
            return {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is damaged or truncated ({e}).") from e


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


def load_module_state(module: nn.Module, state: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """load_state_dict with a message naming the layers that do not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(f"{k} {tuple(state[k].shape)}!={tuple(own[k].shape)}"
                                                       for k in wrong[:5]))
        raise CheckpointError(f"{path}: the {what} weights do not fit this architecture ({'; '.join(parts)}).")
    module.load_state_dict(state)


@dataclass
class LoadedModel:
    G: nn.Module
    spec: ModelSpec
    meta: dict[str, Any]
    path: Path
    fast: Any = None  # a ganplug.fastpath.CompiledPass when the server compiled this model (--compile)

    @property
    def background(self) -> tuple[int, int, int]:
        """The colour its training images' transparency was composited onto (`ganplug train --background`):
        inputs and reference images with alpha are shown to the model on it, as training did."""
        from ganplug.data.decode import parse_color

        return parse_color(self.meta.get("train", {}).get("background") or "white")


def model_config_of(meta: dict[str, Any], path: Path) -> Any:
    """The checkpoint's model config, valid and small enough to allocate; anything else is a CheckpointError."""
    try:
        cfg = config_from_dict(meta["arch"], meta["model"])
        check_budget(meta["arch"], cfg)  # before anyone allocates: damaged widths would ask for hundreds of GB
        return cfg
    except KeyError as e:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {e}; it was not written by `ganplug train`.") from e
    except UserError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except (TypeError, ValueError) as e:  # values of the wrong type that got past validation
        raise CheckpointError(f"{path}: the model options in its metadata are malformed ({e}).") from e


def load_generator(path: Path | str, device: str | torch.device = "cpu", ema: bool = True) -> LoadedModel:
    """The generator of a run folder or checkpoint file, in eval mode, ready for sampling."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    cfg = model_config_of(meta, path)
    G, _, spec = build_models(meta["arch"], cfg)
    prefix = "G_ema" if ema else "G"
    tensors = read_tensors(path, (prefix + ".",))
    if not tensors:
        raise CheckpointError(f"{path} holds no {prefix} weights.")
    load_module_state(G, strip_prefix(tensors, prefix), "generator", path)
    G.to(device).eval().requires_grad_(False)
    return LoadedModel(G=G, spec=spec, meta=meta, path=path)


def load_discriminator(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    cfg = model_config_of(meta, path)
    _, D, spec = build_models(meta["arch"], cfg)
    tensors = read_tensors(path, ("D.",))
    if not tensors:
        raise CheckpointError(f"{path} holds no discriminator weights (an inference-only file?).")
    load_module_state(D, strip_prefix(tensors, "D"), "discriminator", path)
    D.to(device).eval().requires_grad_(False)
    return D, spec


def restore_optimizer(opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> None:
    """Load a saved optimiser state, each moment tensor laid out in memory like its parameter.

    Checkpoints store tensors contiguous, while a channels_last parameter has other strides; fused Adam
    walks parameter and state storage element by element, so a contiguous state next to a channels_last
    parameter pairs the wrong elements and resume drifts from the uninterrupted run.
    """
    opt.load_state_dict(_unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    match_param_layout(opt)


def match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give every state tensor shaped like its parameter that parameter's strides (values unchanged)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


RELEASE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def export_release(src: Path | str, out: Path | str, *, dtype: str = "fp16", discriminator: bool = True,
                   notice: str = "") -> Path:
    """A small file to share or ship a model: G_ema (the weights every reader samples from) and, unless
    left out, D (so `train --init-from` can fine-tune it without a fresh critic undoing G), in `dtype`;
    no optimiser or RNG state, so it cannot resume a run. `notice` (e.g. the training images' licence
    and attribution) is stored in the metadata and shown by the readers that list models."""
    src = resolve_checkpoint(src)
    meta = read_meta(src)
    model_config_of(meta, src)  # refuse a damaged source before writing anything
    if dtype not in RELEASE_DTYPES:
        raise UserError(f"--dtype {dtype!r}: use fp16, bf16 or fp32.")
    want = ("G_ema.", "D.") if discriminator else ("G_ema.",)
    tensors = read_tensors(src, want)
    if not any(k.startswith("G_ema.") for k in tensors):
        raise CheckpointError(f"{src} holds no G_ema weights to export.")
    cast = RELEASE_DTYPES[dtype]
    tensors = {k: v.to(cast) if v.is_floating_point() else v for k, v in tensors.items()}
    doc = {k: v for k, v in meta.items() if k not in ("optimizers",)}
    doc.update(release={"from": src.name, "step": meta.get("step"), "dtype": dtype, "discriminator": discriminator},
               optimizers={})
    if notice:
        doc["notice"] = notice
    out = Path(out)
    atomic_write_bytes(out, st_save(tensors, metadata={META_KEY: json.dumps(doc)}))
    return out


def read_resume_meta(path: Path | str) -> tuple[dict[str, Any], int]:
    """The run settings (`train`) and the step a checkpoint resumes from, both checked: a checkpoint without
    them can still seed a new run (--init-from), but cannot continue one."""
    path = Path(path)
    meta = read_meta(path)
    if "release" in meta:
        raise CheckpointError(f"{path} is an exported model (weights only, no optimiser state), so it cannot "
                              f"resume a run; start a new run from it with `ganplug train DATA --out NEW "
                              f"--init-from {path}`.")
    train, step = meta.get("train"), meta.get("step")
    fix = (f"Resume from another checkpoint of the run (move {path.name} out of {path.parent}), or start a new "
           f"run from its weights with `ganplug train DATA --out NEW --init-from {path}`.")
    if not isinstance(train, dict) or not isinstance(train.get("data"), str):
        what = "has no 'train' section" if not isinstance(train, dict) else "has no training data path in 'train'"
        raise CheckpointError(f"{path}: the checkpoint metadata {what}, so the run's settings are unknown. {fix}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: the checkpoint metadata says step {step!r:.40}, not a step count "
                              f"(0 or more); the file is damaged. {fix}")
    return train, step


def config_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)
