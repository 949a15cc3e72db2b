"""Where pretrained network files come from, and whether they are the files we think they are.

Each file is found in this order: `--weights-dir`, `$GANPLUG_WEIGHTS`, `~/.cache/ganplug`, then the
places other tools keep the same file (clean-fid's download folder, torch hub's checkpoint folder, the
`lpips` package's bundled weights), so a machine that already ran clean-fid or torchvision needs
nothing new. A file whose SHA-256 differs from the published one is refused (naming both hashes)
unless the caller explicitly allows unverified weights, as the tests do with seeded stand-ins; results
then say `"verified": false` so nobody mistakes them for published-comparable numbers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ganplug.errors import UserError


@dataclass(frozen=True)
class WeightFile:
    key: str
    filename: str
    url: str
    sha256: str | None  # full digest where published/recorded
    sha256_prefix: str | None  # torch-hub style prefix in the file name (checked when no full digest)
    used_by: tuple[str, ...]
    what: str


INCEPTION = WeightFile(
    key="inception",
    filename="inception-2015-12-05.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    sha256=None,  # not yet pinned: recorded by `ganplug weights fetch` output on a machine with internet
    sha256_prefix=None,
    used_by=("fid", "kid", "is", "pr", "dc"),
    what="TorchScript Inception-v3 (TF 2015-12-05 graph) used by clean-fid and StyleGAN2-ADA",
)
VGG16 = WeightFile(
    key="vgg16",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256=None,
    sha256_prefix="397923af",
    used_by=("ppl",),
    what="torchvision VGG16 ImageNet weights (the LPIPS backbone)",
)
LPIPS_VGG = WeightFile(
    key="lpips-vgg16",
    filename="vgg.pth",
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    sha256_prefix=None,
    used_by=("ppl",),
    what="LPIPS v0.1 linear calibration layers for VGG16 (shipped inside the `lpips` PyPI package)",
)
KNOWN: dict[str, WeightFile] = {w.key: w for w in (INCEPTION, VGG16, LPIPS_VGG)}


class WeightsError(UserError):
    """A pretrained file is missing or is not the published file."""


@dataclass(frozen=True)
class FoundWeights:
    spec: WeightFile
    path: Path
    sha256: str
    verified: bool  # True: matches the published hash; False: allowed though unverified or unpinned

    def as_json(self) -> dict:
        return {"file": self.spec.filename, "path": str(self.path), "sha256": self.sha256,
                "verified": self.verified}


def ganplug_cache_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/ganplug"))


def search_dirs(spec: WeightFile, weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for `spec`, first match wins."""
    dirs: list[Path] = []
    if weights_dir:
        dirs.append(Path(weights_dir).expanduser())
    env = os.environ.get("GANPLUG_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(ganplug_cache_dir())
    if spec.key == "inception":
        dirs.append(Path("/tmp"))  # clean-fid downloads its Inception file into /tmp (./ on Windows)
    try:
        import torch.hub

        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:  # noqa: BLE001 - torch hub dir is a convenience, never required
        pass
    if spec.key == "lpips-vgg16":
        try:
            import importlib.util

            found = importlib.util.find_spec("lpips")
            if found is not None and found.origin:
                dirs.append(Path(found.origin).parent / "weights" / "v0.1")
        except (ImportError, ValueError):
            pass
    seen: set[Path] = set()
    return [d for d in dirs if not (d in seen or seen.add(d))]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_hash(spec: WeightFile, digest: str) -> bool | None:
    """True/False when ganplug knows what the file should hash to, None when it does not."""
    if spec.sha256:
        return digest == spec.sha256
    if spec.sha256_prefix:
        return digest.startswith(spec.sha256_prefix)
    return None


def expected_hash_text(spec: WeightFile) -> str:
    if spec.sha256:
        return f"sha256 {spec.sha256}"
    if spec.sha256_prefix:
        return f"sha256 starting {spec.sha256_prefix}"
    return "sha256 not pinned by ganplug yet"


def missing_message(spec: WeightFile, weights_dir=None) -> str:
    where = ", ".join(str(d) for d in search_dirs(spec, weights_dir))
    return (f"{spec.filename} ({spec.what}; {expected_hash_text(spec)}) was not found; searched {where}. "
            f"Download it from {spec.url} on a machine with internet (or run `ganplug weights fetch "
            f"{spec.key}` there) and put it in {ganplug_cache_dir()} or a folder given by --weights-dir "
            f"or $GANPLUG_WEIGHTS.")


def locate(key: str, weights_dir=None, allow_unverified: bool = False) -> FoundWeights | None:
    """Find and verify a weights file; None when absent. A wrong hash raises WeightsError."""
    spec = KNOWN[key]
    for d in search_dirs(spec, weights_dir):
        path = d / spec.filename
        if not path.is_file():
            continue
        digest = sha256_file(path)
        ok = check_hash(spec, digest)
        if ok is False and not allow_unverified:
            raise WeightsError(
                f"{path} is not the published {spec.filename}: expected {expected_hash_text(spec)}, found "
                f"sha256 {digest}. Delete it and download it again from {spec.url} (or pass "
                f"--allow-unverified-weights to use it anyway; results are then marked unverified).")
        return FoundWeights(spec=spec, path=path, sha256=digest, verified=bool(ok))
    return None


def require(key: str, weights_dir=None, allow_unverified: bool = False) -> FoundWeights:
    found = locate(key, weights_dir, allow_unverified)
    if found is None:
        raise WeightsError(missing_message(KNOWN[key], weights_dir))
    return found


def fetch(key: str, dest_dir=None, force: bool = False, timeout: float = 60.0) -> FoundWeights:
    """Download one file into `dest_dir` (default ~/.cache/ganplug), verify, then rename into place."""
    spec = KNOWN[key]
    dest = Path(dest_dir).expanduser() if dest_dir else ganplug_cache_dir()
    target = dest / spec.filename
    if target.exists() and not force:
        found = locate(key, dest)
        assert found is not None
        return found
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(spec.url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            raise WeightsError(
                f"could not download {spec.filename} from {spec.url} ({e}). Without internet, download it on "
                f"another machine and copy it to {target} (or any folder passed as --weights-dir or "
                f"$GANPLUG_WEIGHTS); expected {expected_hash_text(spec)}.") from None
        digest = sha256_file(tmp)
        if check_hash(spec, digest) is False:
            raise WeightsError(f"downloaded {spec.filename} has sha256 {digest}, expected "
                               f"{expected_hash_text(spec)}; nothing was written. Try again later.")
        os.replace(tmp, target)
        dir_fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return FoundWeights(spec=spec, path=target, sha256=digest, verified=check_hash(spec, digest) is True)
    finally:
        if tmp.exists():
            tmp.unlink()


def survey(weights_dir=None) -> list[dict]:
    """For `ganplug weights list`: each known file, where it was found or every place searched."""
    rows = []
    for key, spec in KNOWN.items():
        row = {"key": key, "file": spec.filename, "used_by": list(spec.used_by), "expected": expected_hash_text(spec),
               "searched": [str(d) for d in search_dirs(spec, weights_dir)], "found": None, "status": "missing"}
        try:
            found = locate(key, weights_dir, allow_unverified=True)
        except OSError as e:
            row["status"] = f"unreadable ({e})"
            found = None
        if found is not None:
            ok = check_hash(spec, found.sha256)
            row.update(found=str(found.path), sha256=found.sha256,
                       status={True: "ok", False: "WRONG HASH", None: "found (hash not pinned)"}[ok])
        rows.append(row)
    return rows
