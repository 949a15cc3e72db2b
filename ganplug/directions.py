"""Latent directions found without labels (GANSpace, Härkönen et al. 2020), and edits along them.

Style-based models: PCA of w = mapping(z) over sampled z; an edit moves every style input's w. z-only
models (DCGAN): PCA of the first generator block's activations, each principal direction then regressed
back to z by least squares (GANSpace's recipe for BigGAN), so the edit moves z. Either way a direction is
a unit vector in the edited space and its spread is the standard deviation of the samples' projections
on it, so `k:+2` means "two standard deviations along direction k" in any model.

The file is safetensors (vectors, spreads, mean) plus a JSON document naming the generator it was made
for (architecture, latent sizes, a SHA-256 of the generator's weights); it is refused for any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor, nn

from ganplug.atomic import atomic_write_bytes
from ganplug.checkpoint import CKPT_DIR, LoadedModel
from ganplug.errors import UserError

FORMAT = "ganplug-directions"
FORMAT_VERSION = 1
META_KEY = "ganplug"
DEFAULT_NAME = "directions.safetensors"
EXACT_LIMIT = 2048  # PCA by an exact eigendecomposition up to this many dimensions, randomised SVD above
MAX_AMOUNT = 100.0  # standard deviations: beyond this an edit is a typo, not a look
Edit = tuple[int, float]  # (direction index, amount in standard deviations)
Progress = Callable[[int, int], None]
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.ELU, nn.Tanh)
_EDIT_RE = re.compile(r"^\s*(\d{1,6})\s*:\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d{1,3})?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Directions:
    """Unit directions [n, D] sorted by spread, each one's spread (std) [n], the samples' mean [D], the space
    they live in ('w' or 'z') and the document naming the generator they were made for."""

    vectors: Tensor
    std: Tensor
    mean: Tensor
    space: str
    meta: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])


# ----------------------------------------------------------------------------------- identity


def space_of(model: LoadedModel) -> str:
    """'w' for style-based generators, 'z' for z-only ones; image-to-image models have no latent to edit."""
    spec = model.spec
    if spec.image_to_image or getattr(spec, "latent", None) == "none":
        raise UserError(f"{model.path} is an image-to-image ({spec.arch}) model: it has no latent space to find "
                        "directions in. Directions need a model that draws from seeds (dcgan, stylegan).")
    return "w" if spec.style_based or getattr(spec, "latent", None) == "w" else "z"


def generator_digest(G: nn.Module) -> str:
    """SHA-256 of every weight and buffer of G by name: a directions file is only valid for these weights
    (even a later checkpoint of the same run has moved its principal directions)."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        a = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{a.dtype}:{tuple(a.shape)};".encode())
        h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def identity(model: LoadedModel) -> dict[str, Any]:
    """What a directions file records of its model, and what `load` compares."""
    spec = model.spec
    return {"arch": spec.arch, "space": space_of(model), "z_dim": spec.z_dim,
            "w_dim": int(getattr(model.G, "w_dim", 0) or 0), "num_ws": spec.num_ws,
            "generator_sha256": generator_digest(model.G), "checkpoint": str(model.path),
            "step": model.meta.get("step")}


def run_folder(model: LoadedModel) -> Path:
    """The run folder of a checkpoint (RUN for RUN/checkpoints/step-N.safetensors), else its own folder."""
    parent = model.path.parent
    return parent.parent if parent.name == CKPT_DIR else parent


def default_path_of(checkpoint: Path) -> Path:
    """Where `ganplug directions` writes and `generate --edit` and the server look: RUN/directions.safetensors
    for a run's checkpoint; NAME.directions.safetensors beside a loose NAME.safetensors (several loose
    checkpoints in one folder must not share one file)."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == CKPT_DIR:
        return checkpoint.parent.parent / DEFAULT_NAME
    return checkpoint.with_name(f"{checkpoint.stem}.{DEFAULT_NAME}")


def default_path(model: LoadedModel) -> Path:
    return default_path_of(model.path)


# ----------------------------------------------------------------------------------- PCA


def _flip_signs(components: Tensor) -> Tensor:
    """A deterministic sign per component (its largest-magnitude entry positive): PCA's sign is arbitrary."""
    idx = components.abs().argmax(dim=1)
    signs = torch.sign(components.gather(1, idx[:, None]))
    return components * torch.where(signs == 0, torch.ones_like(signs), signs)


def pca(x: Tensor, n: int, *, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(mean [D], unit components [n, D] by decreasing spread, spread [n]) of samples x [N, D], in float64.

    Spread is the sample standard deviation (ddof 1) of the projections. Exact (eigendecomposition of the
    covariance) up to EXACT_LIMIT dimensions; above, a seeded randomised SVD, which is accurate for the
    leading components, the only ones kept.
    """
    N, D = x.shape
    if not 1 <= n <= min(N - 1, D):
        raise UserError(f"cannot find {n} directions from {N} samples of {D} numbers; ask for at most "
                        f"{max(0, min(N - 1, D))} (--n) or sample more (--samples).")
    mean = x.sum(0, dtype=torch.float64) / N  # accumulated in float64 without a float64 copy of x
    if D <= EXACT_LIMIT:
        xc = x.double() - mean
        var, vecs = torch.linalg.eigh(xc.T @ xc / (N - 1))
        order = torch.argsort(var, descending=True)[:n]
        comps, var = vecs[:, order].T, var[order].clamp_min(0)
    else:  # wide activations (DCGAN: 8192 numbers a sample): float32, as float64 copies would double the memory
        xc = x.float() - mean.float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(xc, q=min(2 * n + 20, N, D), niter=8)
        comps, var = v[:, :n].T.double(), s[:n].double().square() / (N - 1)
    return mean, _flip_signs(comps.contiguous()), var.sqrt()


def regress_to_latent(z: Tensor, coords: Tensor) -> Tensor:
    """Unit z-directions [n, z_dim] whose linear effect best reproduces each PCA coordinate: the least-squares
    U with coords @ U ~ (z - mean z), row k normalised (GANSpace for BigGAN)."""
    zc = z.double() - z.double().mean(0)
    U = torch.linalg.lstsq(coords.double(), zc).solution
    return U / U.norm(dim=1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------------- sampling


class _Stop(Exception):
    """Raised by the feature hook: nothing after the first block needs computing."""


def feature_layer(G: nn.Module) -> tuple[str, nn.Module]:
    """The output of the generator's first block: its first activation module (DCGAN: z -> 4x4, BN, ReLU)."""
    for name, module in G.named_modules():
        if isinstance(module, _ACTIVATIONS):
            return name, module
    raise UserError(f"{type(G).__name__} has no activation layer to take early features from; directions for a "
                    "z-only model need one.")


def early_features(G: nn.Module, z: Tensor) -> Tensor:
    """The first block's activations of G(z), flattened to [N, F]; the rest of G never runs."""
    _, module = feature_layer(G)
    found: list[Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Tensor) -> None:
        found.append(out.detach().float().reshape(len(z), -1).clone())
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        G(z)
    except _Stop:
        pass
    finally:
        handle.remove()
    return found[0]


def sample_latents(z_dim: int, samples: int, seed: int) -> Tensor:
    """`samples` standard-normal z from one seeded generator (the same set on any machine)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(samples, z_dim, generator=gen)


def _map_batches(fn: Callable[[Tensor], Tensor], z: Tensor, device: torch.device, batch_size: int,
                 progress: Progress | None) -> Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(z), batch_size):
            out.append(fn(z[start : start + batch_size].to(device)).float().cpu())
            if progress is not None:
                progress(min(len(z), start + batch_size), len(z))
    return torch.cat(out)


def find(model: LoadedModel, *, n: int = 12, samples: int = 10_000, seed: int = 0, batch_size: int = 256,
         progress: Progress | None = None) -> Directions:
    """Principal directions of `model`: in w (style-based) or in z regressed from early features (z-only)."""
    space = space_of(model)
    G = model.G
    device = next(G.parameters()).device
    z = sample_latents(model.spec.z_dim, samples, seed)
    meta: dict[str, Any] = {"samples": samples, "seed": seed}
    if space == "w":
        w = _map_batches(lambda b: G.mapping(b)[:, 0], z, device, batch_size, progress)
        mean, vectors, std = pca(w, n, seed=seed)
        meta["method"] = "PCA of w = mapping(z) (GANSpace)"
    else:
        feats = _map_batches(lambda b: early_features(G, b), z, device, batch_size, progress)
        f_mean, f_vecs, f_std = pca(feats, n, seed=seed)
        coords = ((feats - f_mean.float()) @ f_vecs.float().T).double()
        vectors = regress_to_latent(z, coords)
        mean = z.double().mean(0)
        std = ((z.double() - mean) @ vectors.T).std(0)
        meta.update(method="PCA of early activations regressed to z (GANSpace)", feature_layer=feature_layer(G)[0],
                    feature_std=f_std.tolist())
    return Directions(vectors.float(), std.float(), mean.float(), space, {**identity(model), **meta})


# ----------------------------------------------------------------------------------- the file


def save(directions: Directions, path: Path) -> Path:
    """Write the directions atomically: tensors in safetensors, the document in its metadata (no pickle)."""
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **directions.meta, "space": directions.space,
           "count": directions.count}
    tensors = {"directions": directions.vectors.contiguous(), "std": directions.std.contiguous(),
               "mean": directions.mean.contiguous()}
    return atomic_write_bytes(path, st_save(tensors, metadata={META_KEY: json.dumps(doc)}))


def read(path: Path) -> Directions:
    """A directions file, with one-sentence errors for a missing, foreign or damaged one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; make it with `ganplug directions RUN` (or give --directions FILE).")
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {}).get(META_KEY, "null"))
            tensors = {k: f.get_tensor(k) for k in ("directions", "std", "mean")}
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{path} is not a readable ganplug directions file ({e}); make it again with "
                        "`ganplug directions RUN`.") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("space") not in ("w", "z"):
        raise UserError(f"{path} is not a ganplug directions file (no {FORMAT!r} document).")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer ganplug; upgrade ganplug to read it.")
    vec, std, mean = tensors["directions"], tensors["std"], tensors["mean"]
    if vec.dim() != 2 or std.shape != (len(vec),) or mean.shape != (vec.shape[1],):
        raise UserError(f"{path}: its tensors have inconsistent shapes; the file is damaged.")
    return Directions(vec.float(), std.float(), mean.float(), doc["space"], doc)


def check_fits(directions: Directions, model: LoadedModel, path: Path) -> None:
    """Refuse directions made for another generator: architecture, latent sizes and weights must match."""
    own, doc = identity(model), directions.meta
    keys = ("arch", "space", "z_dim", "w_dim", "num_ws", "generator_sha256")
    wrong = [k for k in keys if doc.get(k) != own[k]]
    if wrong:
        made = f"{doc.get('arch')} checkpoint {doc.get('checkpoint')} (step {doc.get('step')})"
        raise UserError(f"{path} was made for another model ({made}; differs in {', '.join(wrong)}), not for "
                        f"{model.path} (step {own['step']}). Run `ganplug directions {run_folder(model)}` to make "
                        "directions for this checkpoint.")
    size = own["w_dim"] if own["space"] == "w" else own["z_dim"]
    if directions.vectors.shape[1] != size:
        raise UserError(f"{path}: its directions have {directions.vectors.shape[1]} numbers, not this model's {size}.")


def load(path: Path, model: LoadedModel) -> Directions:
    """Read a directions file and check it was made for `model`."""
    found = read(path)
    check_fits(found, model, Path(path))
    return found


# ----------------------------------------------------------------------------------- edits


def parse_edits(text: str | Sequence[Any] | None) -> list[Edit]:
    """'0:+2.5,3:-1' (or [{'direction': 0, 'amount': 2.5}] / [(0, 2.5)]) -> [(0, 2.5), (3, -1.0)]; None or ''
    is no edit (a client's sliders all at rest)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return []
    if isinstance(text, str):
        parts = [p for p in text.split(",") if p.strip()]
        matches = [_EDIT_RE.match(p) for p in parts]
        if not parts or not all(matches):
            raise UserError(f"cannot read edits {text!r}: write DIRECTION:AMOUNT pairs, e.g. '0:+2.5,3:-1' "
                            "(amount in standard deviations).")
        edits = [(int(m.group(1)), float(m.group(2))) for m in matches if m]
    else:
        edits = [(int(e["direction"]), float(e["amount"])) if isinstance(e, dict) else (int(e[0]), float(e[1]))
                 for e in text]
    for k, s in edits:
        if k < 0 or not math.isfinite(s) or abs(s) > MAX_AMOUNT:
            raise UserError(f"edit {k}:{s:g}: the direction is an index from 0 and the amount a finite number of "
                            f"standard deviations within +-{MAX_AMOUNT:g}.")
    return edits


def format_edits(edits: Sequence[Edit]) -> str:
    """The --edit string of a list of edits (what a sidecar records to redo them)."""
    return ",".join(f"{k}:{s:+g}" for k, s in edits)


def offset(directions: Directions, edits: Sequence[Edit]) -> Tensor:
    """The latent offset of the edits: sum of amount_k * std_k * direction_k (float32 [D])."""
    bad = [k for k, _ in edits if not 0 <= k < directions.count]
    if bad:
        raise UserError(f"edit direction {bad[0]} is out of range: the directions file has {directions.count} "
                        f"(0-{directions.count - 1}).")
    delta = torch.zeros(directions.vectors.shape[1], dtype=torch.float32)
    for k, s in edits:
        delta = delta + float(s) * directions.std[k] * directions.vectors[k]
    return delta


# ----------------------------------------------------------------------------------- names

NAMES_FORMAT = "ganplug-direction-names"
NAMES_VERSION = 1
NAME_MAX = 40  # characters a name


def names_path(path: Path) -> Path:
    """The names of a directions file live beside it: RUN/directions.names.json."""
    return Path(path).with_suffix(".names.json")


def file_sha256(path: Path) -> str:
    """SHA-256 of a directions file's bytes: names are tied to the file they were given for."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def summary(path: Path) -> tuple[int, str]:
    """(count, space) of a directions file from its document alone (no tensors read)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {}).get(META_KEY, "null"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is not a readable ganplug directions file ({e}); make it again with "
                        "`ganplug directions RUN`.") from None
    count = doc.get("count") if isinstance(doc, dict) else None
    if doc is None or doc.get("format") != FORMAT or doc.get("space") not in ("w", "z") \
            or not isinstance(count, int) or count < 1:
        raise UserError(f"{path} is not a ganplug directions file (no {FORMAT!r} document).")
    return count, doc["space"]


def check_names(names: Sequence[Any], count: int) -> list[str]:
    """Names for the first len(names) directions: strings of at most NAME_MAX printable characters ('' is
    unnamed), at most `count` of them."""
    if len(names) > count:
        raise UserError(f"{len(names)} names given, but the directions file has {count} directions.")
    for k, name in enumerate(names):
        if not isinstance(name, str):
            raise UserError(f"name {k} is not a string.")
        if len(name) > NAME_MAX or not name.isprintable():
            raise UserError(f"name {k} ({name[:NAME_MAX]!r}...) must be at most {NAME_MAX} printable characters "
                            "(no tabs or line breaks).")
    return list(names)


def read_names(path: Path, count: int | None = None) -> list[str | None]:
    """The names given to a directions file's directions (None = unnamed), one per direction. Names saved for
    another version of the file (`ganplug directions --force` made it again) are not its names: all None."""
    path = Path(path)
    if count is None:
        count, _ = summary(path)
    out: list[str | None] = [None] * count
    try:
        doc = json.loads(names_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out  # none saved yet (or a damaged file: the labels are lost, the directions are not)
    if not isinstance(doc, dict) or doc.get("format") != NAMES_FORMAT or doc.get("directions_sha256") != \
            file_sha256(path) or not isinstance(doc.get("names"), list):
        return out
    for k, name in enumerate(doc["names"][:count]):
        if isinstance(name, str) and name and len(name) <= NAME_MAX and name.isprintable():
            out[k] = name
    return out


def save_names(path: Path, names: Sequence[Any]) -> Path:
    """Write the names of a directions file's first len(names) directions beside it, atomically, tied to the
    file's SHA-256 (so they are not shown for a new directions file)."""
    path = Path(path)
    count, _ = summary(path)
    names = check_names(names, count)
    doc = {"format": NAMES_FORMAT, "format_version": NAMES_VERSION, "directions": path.name,
           "directions_sha256": file_sha256(path), "count": count, "names": names}
    return atomic_write_bytes(names_path(path), json.dumps(doc, indent=2).encode())


def describe_names(path: Path) -> list[str]:
    """One line per direction, 'K: name' (or 'K: (unnamed)'): what `ganplug directions RUN --names` prints."""
    return [f"{k}: {name if name else '(unnamed)'}" for k, name in enumerate(read_names(path))]
