"""Where pretrained network files come from, and whether they are the files we think they are.

Each file is found in this order: `--weights-dir`, `$GANPLUG_WEIGHTS`, `~/.cache/ganplug`, then the
places other tools keep the same file in the user's own folders (torch hub's checkpoint folder, the
`lpips` package's bundled weights, OpenAI clip's `~/.cache/clip`), so a machine that already ran torchvision
(or torch hub's dinov2, as dgm-eval does) needs nothing new.

The system temp folder (`/tmp`, `tempfile.gettempdir()`, where clean-fid downloads its Inception file) is
never searched: anyone can put a file there, and `inception-2015-12-05.pt` is TorchScript, which runs code
when loaded. For the same reason a file that is found is refused (WeightsError, exit 2) when it, or the
folder it sits in, could have been written by another user: group- or world-writable, or owned by someone
other than the current user or root; or when a folder above it is world-writable without the sticky bit
(so the folder could be swapped). `check_safe_to_load` is also called right before any TorchScript load.

A file whose SHA-256 differs from the published one is refused (naming both hashes) unless the caller
explicitly allows unverified weights, as the tests do with seeded stand-ins; results then say
`"verified": false` so nobody mistakes them for published-comparable numbers. A file whose hash is not
pinned (Inception: no published digest found) is used and reported `"verified": false`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import urllib.request
import zipfile
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
    # Not pinned: no published digest was found (clean-fid and StyleGAN2-ADA download it without a check).
    # Record it from `ganplug weights fetch` output on a machine with internet.
    sha256=None,
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
DINOV2_VITL14 = WeightFile(
    key="dinov2-vitl14",
    filename="dinov2_vitl14_pretrain.pth",
    url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
    # Not pinned: Meta publishes no digest (torch hub downloads it without a hash check).
    sha256=None,
    sha256_prefix=None,
    used_by=("fd_dinov2", "pr", "dc"),
    what="DINOv2 ViT-L/14 backbone state dict (torch hub dinov2_vitl14; FD-DINOv2 of Stein et al. 2023)",
)
CLIP_VITL14_336 = WeightFile(
    key="clip-vitl14-336",
    filename="ViT-L-14-336px.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
    # Published: the digest is part of OpenAI's URL; OpenAI's clip.py and scenic (CMMD's loader) check it.
    sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
    sha256_prefix=None,
    used_by=("cmmd",),
    what="TorchScript OpenAI CLIP ViT-L/14@336px (the network of the CMMD reference code)",
)
KNOWN: dict[str, WeightFile] = {w.key: w for w in (INCEPTION, VGG16, LPIPS_VGG, DINOV2_VITL14, CLIP_VITL14_336)}


class WeightsError(UserError):
    """A pretrained file is missing or is not the published file."""


@dataclass(frozen=True)
class FoundWeights:
    spec: WeightFile
    path: Path
    sha256: str
    verified: bool  # True: matches the published hash; False: allowed though unverified or unpinned
    hash_ok: bool | None = None  # check_hash: True/False, None when ganplug knows no hash for the file
    standin: bool = False  # a seeded stand-in written by ganplug.eval.features.standin

    @property
    def status(self) -> str:
        """Where numbers made with this file stand: verified | stand-in | hash differs | hash not pinned."""
        if self.standin:
            return "stand-in"
        if self.verified:
            return "verified"
        return "hash differs" if self.hash_ok is False else "hash not pinned"

    def as_json(self) -> dict:
        return {"file": self.spec.filename, "path": str(self.path), "sha256": self.sha256,
                "verified": self.verified, "status": self.status}


STANDIN_MARKER = "ganplug-standin"  # the record ganplug.eval.features.standin adds to the files it writes


def is_standin(path: Path) -> bool:
    """True for a file written by ganplug.eval.features.standin: its zip archive carries the marker record.
    Read with zipfile only (nothing is unpickled or run)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"/extra/{STANDIN_MARKER}") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def ganplug_cache_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/ganplug"))


def search_dirs(spec: WeightFile, weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for `spec`, first match wins."""
    chosen: list[Path] = []  # named by the user: checked like any other folder, never dropped silently
    if weights_dir:
        chosen.append(Path(weights_dir).expanduser())
    env = os.environ.get("GANPLUG_WEIGHTS")
    if env:
        chosen.append(Path(env).expanduser())
    dirs: list[Path] = [ganplug_cache_dir()]
    # Never the system temp folder: clean-fid downloads its Inception file into /tmp, but anyone can put a
    # file there, and that file is TorchScript (code). See `temp_copies` for the hint given instead.
    try:
        import torch.hub

        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:  # noqa: BLE001 - torch hub dir is a convenience, never required
        pass
    if spec.key == "clip-vitl14-336":  # where OpenAI's clip.load() downloads it
        dirs.append(Path(os.path.expanduser("~/.cache/clip")))
    if spec.key == "lpips-vgg16":
        try:
            import importlib.util

            found = importlib.util.find_spec("lpips")
            if found is not None and found.origin:
                dirs.append(Path(found.origin).parent / "weights" / "v0.1")
        except (ImportError, ValueError):
            pass
    temp = {_real(Path(tempfile.gettempdir())), _real(Path("/tmp"))}
    dirs = chosen + [d for d in dirs if _real(d) not in temp]
    seen: set[Path] = set()
    return [d for d in dirs if not (d in seen or seen.add(d))]


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _trusted_uids() -> set[int]:
    return {os.getuid(), 0}


def _who(st: os.stat_result) -> str:
    return f"owned by uid {st.st_uid}, not you (uid {os.getuid()}) or root"


def _folder_problem(folder: Path) -> str | None:
    """Why files in `folder` could have been put there by another user, or None."""
    try:
        st = folder.stat()
    except OSError as e:
        return f"its folder {folder} cannot be checked ({e.strerror or e})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return (f"it sits in {folder}, which other users can write to (mode {mode:#o}); keep weights in a "
                f"folder only you can write to, e.g. `chmod go-w {folder}` or move the file to {ganplug_cache_dir()}")
    if st.st_uid not in _trusted_uids():
        return f"it sits in {folder}, which is {_who(st)}"
    for up in folder.parents:  # an ancestor others can write to (no sticky bit) lets them swap the folder
        try:
            ust = up.stat()
        except OSError:
            continue
        umode = stat.S_IMODE(ust.st_mode)
        if umode & 0o002 and not umode & stat.S_ISVTX:
            return (f"its folder {folder} is inside {up}, which every user can write to (mode {umode:#o}, no "
                    f"sticky bit), so the folder could be replaced")
    return None


def unsafe_reason(path: str | os.PathLike) -> str | None:
    """Why the weights file at `path` must not be trusted (another user could have written it), or None.

    Checked: the file itself (after following a symlink) is not group- or world-writable and is owned by
    the current user or root; the folder holding it (and the folder holding the symlink, if it is one)
    passes the same two checks; and no folder above those is world-writable without the sticky bit.
    Not checked on Windows, which has no POSIX modes or uids.
    """
    if not hasattr(os, "getuid"):
        return None
    given = Path(path)
    real = _real(given)
    try:
        st = real.stat()
    except OSError as e:
        return f"it cannot be checked ({e.strerror or e})"
    mode = stat.S_IMODE(st.st_mode)
    shown = f"{real}" if real != given else "it"
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is not a regular file"
    if mode & 0o022:
        return (f"{shown} can be modified by other users (mode {mode:#o}); if you trust its contents, "
                f"`chmod go-w {real}`")
    if st.st_uid not in _trusted_uids():
        return f"{shown} is {_who(st)}"
    for folder in dict.fromkeys((_real(given.parent), real.parent)):
        problem = _folder_problem(folder)
        if problem:
            return problem
    return None


def check_safe_to_load(path: str | os.PathLike, what: str = "weights file") -> None:
    """Raise WeightsError naming `path` when another user could have written it (see `unsafe_reason`)."""
    reason = unsafe_reason(path)
    if reason:
        raise WeightsError(f"refusing to use {path} ({what}): {reason}. A file that other users could have "
                           f"written is never loaded, whatever its hash (TorchScript files run code when loaded).")


def temp_copies(spec: WeightFile) -> list[Path]:
    """Copies of `spec` in the system temp folder (never used; named in the not-found message)."""
    out = []
    for d in dict.fromkeys((Path(tempfile.gettempdir()), Path("/tmp"))):
        try:
            if (d / spec.filename).is_file():
                out.append(d / spec.filename)
        except OSError:
            pass
    return out


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
            f"or $GANPLUG_WEIGHTS (a folder only you can write to)."
            + "".join(f" {p} was not used: the system temp folder is never searched, since any user can put a "
                      f"file there; if you downloaded it yourself, check it and move it to {ganplug_cache_dir()}."
                      for p in temp_copies(spec)))


def locate(key: str, weights_dir=None, allow_unverified: bool = False) -> FoundWeights | None:
    """Find and verify a weights file; None when absent. A wrong hash raises WeightsError."""
    spec = KNOWN[key]
    for d in search_dirs(spec, weights_dir):
        path = d / spec.filename
        if not path.is_file():
            continue
        check_safe_to_load(path, spec.what)
        digest = sha256_file(path)
        ok = check_hash(spec, digest)
        if ok is False and not allow_unverified:
            raise WeightsError(
                f"{path} is not the published {spec.filename}: expected {expected_hash_text(spec)}, found "
                f"sha256 {digest}. Delete it and download it again from {spec.url} (or pass "
                f"--allow-unverified-weights to use it anyway; results are then marked unverified).")
        return FoundWeights(spec=spec, path=path, sha256=digest, verified=bool(ok), hash_ok=ok,
                            standin=is_standin(path))
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
    dest.mkdir(parents=True, exist_ok=True, mode=0o755)
    problem = _folder_problem(_real(dest))
    if hasattr(os, "getuid") and problem:
        raise WeightsError(f"refusing to download {spec.filename} into {dest}: {problem}.")
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
               "url": spec.url,
               "searched": [str(d) for d in search_dirs(spec, weights_dir)], "found": None, "status": "missing"}
        try:
            found = locate(key, weights_dir, allow_unverified=True)
        except WeightsError as e:
            row["status"] = f"REFUSED: {e}"
            found = None
        except OSError as e:
            row["status"] = f"unreadable ({e})"
            found = None
        if found is not None:
            ok = check_hash(spec, found.sha256)
            row.update(found=str(found.path), sha256=found.sha256,
                       status={True: "ok", False: "WRONG HASH", None: "found (hash not pinned)"}[ok]
                       + (" (a ganplug stand-in: numbers made with it are not comparable to published ones)"
                          if found.standin else ""))
        rows.append(row)
    return rows
