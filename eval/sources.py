"""What `ganplug eval` compares: FAKE and REAL inputs, read lazily in batches.

- a run folder or checkpoint file: samples drawn in batches from seeds `seed .. seed+n-1` (recorded),
  never all written to disk;
- a folder of images (recursive; png/jpg/webp/bmp/tif...); mixed sizes are allowed and noted;
- a prepared dataset (`ganplug prep` output);
- (REAL only) an .npz statistics file with `mu` and `sigma`: FID only.
Every image leaves a source as an HWC uint8 RGB numpy array. Transparency is composited onto
`background` when one is given; with None, alpha is dropped as clean-fid does. The pipeline passes the
colour a FAKE generator was trained on, so that RGBA art is compared on the background the model
learnt, not on the black that dropping alpha leaves in transparent areas.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganplug.data.decode import ImageReadError, open_image, probe_image
from ganplug.errors import DataError, UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Batch:
    arrays: list[np.ndarray]  # HWC uint8 RGB, sizes may differ

    def stacked(self, size: int) -> torch.Tensor:
        """uint8 NCHW at size x size (PIL bicubic for images of another size)."""
        out = []
        for a in self.arrays:
            if a.shape[0] != size or a.shape[1] != size:
                a = np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC))
            out.append(a)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@dataclass
class Source(ABC):
    kind: str  # checkpoint | folder | dataset | stats
    path: Path
    count: int = 0
    size: int = 0  # the common (most frequent) image size; 0 for stats
    notes: list[str] = field(default_factory=list)
    background: tuple[int, int, int] | None = None  # what transparency is composited onto (None: dropped)

    @abstractmethod
    def batches(self, batch_size: int, every: int = 1, offset: int = 0) -> Iterator[Batch]:
        """The source's images in order, `batch_size` at a time; with `every` W > 1, only batches
        `offset, offset + W, ...` (one rank's share of a multi-process pass; each batch holds the same
        images as in the whole sequence, so its pixels and features are the one-process run's)."""

    def content_hash(self) -> str | None:
        return None

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "count": self.count, "size": self.size,
                "notes": list(self.notes)}


def _starts(total: int, batch_size: int, every: int, offset: int) -> range:
    """First rows of batches offset, offset + every, ... of `total` rows in batches of `batch_size`."""
    return range(offset * batch_size, total, every * batch_size)


def subset_rows(total: int, n: int | None, seed: int) -> np.ndarray:
    """The sorted seeded subset of n rows out of total that every source and the collapse battery use."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.RandomState(seed).choice(total, n, replace=False))


def _to_rgb(img: Image.Image, background: tuple[int, int, int] | None) -> np.ndarray:
    """A decoded RGB/RGBA image as RGB: through the one PIL compositing training uses, or alpha dropped."""
    if background is None:
        return np.asarray(img.convert("RGB"))
    from ganplug.data.decode import apply_background

    return np.asarray(apply_background(img, background, False))


def composite(rgba: np.ndarray, background: tuple[int, int, int] | None) -> np.ndarray:
    """uint8 [..., 4] -> [..., 3]: `ganplug.ops.composite` onto `background`, or alpha dropped when None."""
    if background is None:
        return np.ascontiguousarray(rgba[..., :3])
    from ganplug.ops import composite as ops_composite

    return ops_composite(rgba, background)


def _alpha_note(count: int, what: str, background: tuple[int, int, int] | None) -> str:
    if background is None:
        return f"{count} {what} with transparency: alpha dropped (as clean-fid does)"
    return f"{count} {what} with transparency: composited onto {hex_color(background)}"


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#" + bytes(rgb).hex()


def _hash_background(h, background: tuple[int, int, int] | None) -> None:
    if background is not None:  # the same files on another background are other pixels
        h.update(b"background" + bytes(background))


@dataclass
class FolderSource(Source):
    files: list[Path] = field(default_factory=list)
    workers: int = 2

    @classmethod
    def open(cls, path: Path, n: int | None, seed: int, workers: int = 2,
             background: tuple[int, int, int] | None = None) -> FolderSource:
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DataError(f"{path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); point at a folder "
                            "of images, a prepared dataset, a run folder or a .npz statistics file.")
        picked = [files[i] for i in subset_rows(len(files), n, seed)]
        sizes: Counter = Counter()
        modes: Counter = Counter()
        transparent = 0
        for f in picked:  # headers only, through the one safe decoder: bombs and non-images stop here
            try:
                head = probe_image(f)
            except ImageReadError as e:
                raise DataError(f"{e.path}: {e.reason}; remove it from {path} or fix it.") from None
            sizes[head.size] += 1
            modes[head.mode] += 1
            transparent += head.has_alpha
        src = cls(kind="folder", path=path, files=picked, count=len(picked), workers=workers,
                  background=background)
        (w, h), _ = sizes.most_common(1)[0]
        src.size = max(w, h)
        if len(picked) < len(files):
            src.notes.append(f"{len(picked)} of {len(files)} images used (seeded subset, seed {seed})")
        if len(sizes) > 1:
            src.notes.append(f"images come in {len(sizes)} sizes; Inception resizes each to 299, the other "
                             f"metrics use them resized to {src.size}x{src.size}")
        converted = sum(c for m, c in modes.items() if m != "RGB")
        if converted:
            kinds = ", ".join(sorted(m for m in modes if m != "RGB"))
            src.notes.append(f"{converted} image(s) in mode {kinds} converted to RGB")
        if transparent:
            src.notes.append(_alpha_note(transparent, "image(s)", background))
        return src

    def _read(self, f: Path) -> np.ndarray:
        try:
            im = open_image(f)  # RGB or RGBA, as prep and training read it
        except ImageReadError as e:
            raise DataError(f"{e.path}: {e.reason}; remove it from {self.path} or fix it.") from None
        return _to_rgb(im, self.background)

    def batches(self, batch_size: int, every: int = 1, offset: int = 0) -> Iterator[Batch]:
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for i in _starts(len(self.files), batch_size, every, offset):
                yield Batch(list(pool.map(self._read, self.files[i:i + batch_size])))

    def content_hash(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(str(f.relative_to(self.path)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
        _hash_background(h, self.background)
        return h.hexdigest()


@dataclass
class DatasetSource(Source):
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    images: np.ndarray | None = None

    @classmethod
    def open(cls, path: Path, n: int | None, seed: int, split: str = "train",
             background: tuple[int, int, int] | None = None) -> DatasetSource:
        from ganplug.data.dataset import open_dataset

        ds = open_dataset(path, split=split)
        rows = subset_rows(len(ds), n, seed)
        src = cls(kind="dataset", path=path, rows=rows, images=ds.images, count=len(rows), size=ds.size,
                  background=background if ds.channels == 4 else None)
        if split != "train":
            src.notes.append(f"the dataset's {split!r} split is the reference (images the generator never saw)")
        if len(rows) < len(ds):
            src.notes.append(f"{len(rows)} of {len(ds)} images used (seeded subset, seed {seed})")
        if ds.channels == 4:
            src.notes.append(_alpha_note(len(rows), "RGBA dataset rows", background))
        return src

    def batches(self, batch_size: int, every: int = 1, offset: int = 0) -> Iterator[Batch]:
        for i in _starts(len(self.rows), batch_size, every, offset):
            block = np.asarray(self.images[self.rows[i:i + batch_size]])
            if block.shape[-1] == 4:
                block = composite(block, self.background)
            yield Batch(list(block))

    def content_hash(self) -> str:
        h = hashlib.sha256()
        arr = self.images
        step = 256
        for i in range(0, len(self.rows), step):
            h.update(np.ascontiguousarray(arr[self.rows[i:i + step]]).tobytes())
        _hash_background(h, self.background)
        return h.hexdigest()


@dataclass
class CheckpointSource(Source):
    loaded: object = None
    seeds: list[int] = field(default_factory=list)
    truncation: float = 1.0
    runtime: object = None

    @classmethod
    def open(cls, path: Path, n: int, seed: int, runtime, truncation: float = 1.0,
             background: tuple[int, int, int] | None = None) -> CheckpointSource:
        from ganplug.checkpoint import load_generator

        loaded = load_generator(path, device=runtime.device)
        if loaded.spec.image_to_image:
            raise UserError(f"{path} is an image-to-image model; `ganplug eval` samples generators driven by z.")
        src = cls(kind="checkpoint", path=Path(loaded.path), loaded=loaded, seeds=list(range(seed, seed + n)),
                  truncation=truncation, runtime=runtime, count=n, size=loaded.spec.size,
                  background=background if loaded.spec.channels == 4 else None)
        if loaded.spec.channels == 4:
            src.notes.append(_alpha_note(n, "RGBA samples", src.background))
        return src

    def set_background(self, background: tuple[int, int, int] | None) -> None:
        """Composite an RGBA model's samples onto `background` (the one REAL uses), known only once FAKE is open."""
        if self.spec.channels == 4:
            self.background = background
            self.notes = [_alpha_note(self.count, "RGBA samples", background)]

    def limit(self, n: int) -> None:
        """Draw only seeds `seed .. seed+n-1` (what `open(n=n)` gives), for a count chosen after opening."""
        self.seeds, self.count = self.seeds[:n], min(n, len(self.seeds))
        if self.spec.channels == 4:
            self.notes = [_alpha_note(self.count, "RGBA samples", self.background)]

    def trained_background(self) -> tuple[int, int, int]:
        """The run's --background: what its training images' transparency was composited onto, and for an
        RGBA model what its cut-outs are judged on (both sides alike), since alpha dropped would score
        the colour under transparent pixels, which nobody sees."""
        return self.loaded.background

    @property
    def G(self):
        return self.loaded.G

    @property
    def spec(self):
        return self.loaded.spec

    def batches(self, batch_size: int, every: int = 1, offset: int = 0) -> Iterator[Batch]:
        from ganplug.sampling import generate

        for i in _starts(len(self.seeds), batch_size, every, offset):
            _, imgs = next(generate(self.G, self.seeds[i:i + batch_size], truncation=self.truncation,
                                    batch_size=batch_size, runtime=self.runtime))
            if imgs.shape[1] == 1:
                imgs = imgs.repeat(1, 3, 1, 1)
            arr = imgs.permute(0, 2, 3, 1).contiguous().numpy()
            yield Batch(list(composite(arr, self.background) if arr.shape[-1] == 4 else arr))

    def describe(self) -> dict:
        d = super().describe()
        d.update(seeds=[self.seeds[0], self.seeds[-1]] if self.seeds else None, truncation=self.truncation,
                 arch=self.spec.arch, step=self.loaded.meta.get("step"))
        return d


@dataclass
class StatsSource(Source):
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def batches(self, batch_size: int, every: int = 1, offset: int = 0) -> Iterator[Batch]:
        return iter(())  # FID statistics only: no images for the image-based metrics

    @classmethod
    def open(cls, path: Path) -> StatsSource:
        from ganplug.eval.metrics.fid import load_stats

        mu, sigma = load_stats(path, dim=2048)
        return cls(kind="stats", path=path, mu=mu, sigma=sigma)


def is_checkpoint_path(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".safetensors") or (path.is_dir() and (path / "checkpoints").is_dir())


def resolve_background(option: str, fake: Source | None = None) -> tuple[int, int, int] | None:
    """`--background`: "none" drops alpha (clean-fid); a colour composites onto it; "auto" is a FAKE
    generator's --background (its training colour; for an RGBA model, what its cut-outs are shown on), and
    drops alpha when FAKE is not a generator."""
    from ganplug.data.decode import parse_color

    option = (option or "auto").strip().lower()
    if option == "none":
        return None
    if option == "auto":
        return fake.trained_background() if isinstance(fake, CheckpointSource) else None
    try:
        return parse_color(option)
    except DataError as e:
        raise UserError(f"--background: {e} (or auto, none).") from None


def open_source(path, *, role: str, n: int | None, seed: int, runtime=None, truncation: float = 1.0,
                workers: int = 2, background: tuple[int, int, int] | None = None) -> Source:
    """Work out what `path` is and open it; `role` is "fake" or "real" (for messages and rules).
    `background`: what transparent images are composited onto (None: alpha dropped)."""
    from ganplug.data.dataset import is_prepared_dataset

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{role.upper()} {path} does not exist.")
    if path.suffix == ".npz" and path.is_file():
        if role == "fake":
            raise UserError(f"{path} is a statistics file; FAKE must be images, a dataset or a checkpoint "
                            "(statistics files can only be REAL).")
        return StatsSource.open(path)
    if is_checkpoint_path(path):
        if role == "real":
            raise UserError(f"{path} is a checkpoint or run folder; REAL must be images, a dataset or a .npz file.")
        return CheckpointSource.open(path, n or 10000, seed, runtime, truncation, background)
    if path.is_dir() and is_prepared_dataset(path):
        # A held-out split (`ganplug prep --holdout`) is the fair real reference: unseen by training.
        split = "holdout" if role == "real" and (Path(path) / "holdout" / "images.npy").is_file() else "train"
        return DatasetSource.open(path, n, seed, split=split, background=background)
    if path.is_dir():
        return FolderSource.open(path, n, seed, workers, background)
    raise UserError(f"{role.upper()} {path} is neither a folder, a prepared dataset, a checkpoint (.safetensors) "
                    "nor a statistics file (.npz).")
