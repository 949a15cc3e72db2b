"""Inception features for FID, KID, IS and PR/DC from `inception-2015-12-05.pt`, batched and fast.

Two preprocessing modes, both defined by clean-fid:
- "clean" (default): each image is resized to 299x299 with PIL bicubic on float data (no quantisation),
  then the trunk `layers` runs on (x - 128) / 128. On CPU the resize is PIL's, channel by channel, so
  features equal clean-fid's; on CUDA it is torch's antialiased bicubic on the GPU (PIL's kernel;
  max difference ~2e-3 grey levels).
- "legacy": the file's own forward with TF-style bilinear resize inside and (x - 128) / 128 (the
  published file's own scaling; see eval/features/inception_arch.py), i.e. clean-fid's
  `legacy_tensorflow` mode and StyleGAN2-ADA's protocol.

Speed: the scripted file is loaded, then its weights are moved into an eager twin of the same
architecture (eval/features/inception_arch.py; the file layouts it accepts: inception_layout.py) with
batch norm folded into the convolutions and channels_last memory, so oneDNN/cuDNN pick fast kernels;
`bf16` runs the twin's weights and activations in bfloat16. If the file's weights do not fit the twin,
the scripted trunk runs as is and the extractor carries a warning saying so and what it costs.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganplug.device import Runtime
from ganplug.errors import UserError
from ganplug.eval.features.inception_arch import INPUT_SIZE, NUM_LOGITS, POOL_DIM, ConvBN, InceptionFID
from ganplug.eval.features.inception_layout import SLOW_PATH, load_twin
from ganplug.eval.features.prep_pool import PrepPool
from ganplug.eval.features.weights import FoundWeights, WeightsError, check_safe_to_load

FID_MODES = ("clean", "legacy")
# How much slower the scripted trunk is than the twin at the precision asked for (CPU, docs/benchmarks.md:
# scripted fp32 8.9 img/s; twin fp32 12.0; twin bf16 24.6-28.7). The scripted trunk always runs in fp32.
SLOW_FACTOR = {"fp32": "1.3x", "bf16": "3x", "fp16": "3x"}


def load_scripted(path) -> torch.jit.ScriptModule:
    """Load the TorchScript file and check it has the interface clean-fid and StyleGAN2-ADA rely on.

    TorchScript runs code when loaded, so a file that another user could have written is refused first.
    """
    check_safe_to_load(path, "TorchScript Inception file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise WeightsError(f"{path} is not a loadable TorchScript Inception file ({e}); download it again.") from None
    if not hasattr(module, "layers") or not hasattr(module, "output"):
        raise WeightsError(f"{path} is TorchScript but has no `layers`/`output`; it is not inception-2015-12-05.pt.")
    return module


def fold_batchnorm_(model: nn.Module) -> nn.Module:
    """Fold eval-mode batch norm into the preceding convolution (exact up to float rounding)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, ConvBN) and isinstance(mod.bn, nn.BatchNorm2d):
                bn, conv = mod.bn, mod.conv
                scale = (bn.running_var + bn.eps).rsqrt()
                if bn.weight is not None:
                    scale = scale * bn.weight
                conv.weight.mul_(scale[:, None, None, None])
                conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
                mod.bn = nn.Identity()
    return model


def eager_twin(scripted: torch.jit.ScriptModule) -> InceptionFID | None:
    """The same weights in an eager module, or None when the file's layout differs from the published one."""
    return load_twin(scripted).twin


def pil_clean_resize(img: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """clean-fid's "clean" resize: per channel, float32 PIL bicubic, clipped to [0, 255]; CHW float32."""
    out = np.empty((3, size, size), dtype=np.float32)
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c]).astype(np.float32), mode="F")
        out[c] = np.asarray(ch.resize((size, size), resample=Image.BICUBIC)).clip(0, 255)
    return out


@dataclass
class InceptionFeatures:
    pool: np.ndarray  # [N, 2048] float64, pool3 features (FID, KID, PR/DC)
    logits: np.ndarray  # [N, 1008] float64, logits without the output bias (IS)


class InceptionExtractor:
    """Loaded once, fed many batches: images (HWC uint8 RGB arrays, any sizes) -> pool3 + logits."""

    def __init__(self, found: FoundWeights, runtime: Runtime, mode: str = "clean", workers: int = 2) -> None:
        if mode not in FID_MODES:
            raise UserError(f"unknown --fid-mode {mode!r}; use clean or legacy.")
        self.found, self.runtime, self.mode = found, runtime, mode
        self.scripted = load_scripted(found.path)
        self.out_weight = self.scripted.output.weight.detach().to(torch.float64)
        match = load_twin(self.scripted) if mode == "clean" else None  # legacy runs the file's own forward
        twin = match.twin if match else None
        self.layout = match.layout if match else None  # "published" | "ganplug" | None (TorchScript runs)
        self.notes: list[str] = []
        self.warnings: list[str] = []  # the user must hear these (JSON `warnings`, terminal, report)
        if runtime.precision == "fp16" and runtime.device.type == "cpu":
            raise UserError("fp16 Inception features are not supported on the CPU; use --precision bf16 or fp32.")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(runtime.precision, torch.float32)
        if mode == "legacy":
            self.trunk = None  # the file's own forward (TF resize inside)
            self.scripted.to(runtime.device)
            if self.dtype != torch.float32:
                self.notes.append("legacy FID mode runs the original TorchScript in fp32")
                self.dtype = torch.float32
        elif twin is not None:
            trunk = fold_batchnorm_(copy.deepcopy(twin.layers))
            trunk = trunk.to(device=runtime.device, dtype=self.dtype)
            if runtime.channels_last:
                trunk = trunk.to(memory_format=torch.channels_last)
            self.trunk = trunk
        else:
            self.warnings.append(f"{found.path} does not match the published inception-2015-12-05.pt layout "
                                 f"({match.reason}); "
                                 + SLOW_PATH.format(factor=SLOW_FACTOR.get(runtime.precision, "1.3x")))
            self.trunk = self.scripted.layers.to(runtime.device)
            self.dtype = torch.float32
        self.prep = PrepPool(workers)

    # --- preprocessing -------------------------------------------------------------------------
    def _resize_cpu(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.prep.stack(pil_clean_resize, images)

    def _resize_gpu(self, images: list[np.ndarray]) -> torch.Tensor:
        out = torch.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), device=self.runtime.device)
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(im.shape, []).append(i)
        for idx in by_shape.values():
            x = torch.from_numpy(np.stack([images[i] for i in idx])).to(self.runtime.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float()
            y = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic",
                                                align_corners=False, antialias=True)
            out[idx] = y.clamp_(0, 255)
        return out

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """Resized float batch in [0, 255] (clean) or the images as they are (legacy; same size needed)."""
        if self.mode == "legacy":
            shapes = {im.shape for im in images}
            if len(shapes) > 1:
                raise UserError("--fid-mode legacy needs images of one size per batch; use --fid-mode clean.")
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        if self.runtime.device.type == "cuda":
            return self._resize_gpu(images)
        return self._resize_cpu(images)

    # --- network -------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.to(self.runtime.device, non_blocking=True)
        if self.mode == "legacy":
            pool = self.scripted(x, return_features=True)
        else:
            x = ((x - 128.0) / 128.0).to(self.dtype)
            if self.runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pool = self.trunk(x)
        pool = pool.reshape(-1, POOL_DIM).to(torch.float64)
        logits = pool @ self.out_weight.to(pool.device).T  # IS uses logits without the output bias
        return pool.cpu(), logits.cpu()

    def extract(self, images: list[np.ndarray]) -> InceptionFeatures:
        pool, logits = self.forward(self.prepare(images))
        return InceptionFeatures(pool=pool.numpy(), logits=logits.numpy())


def empty_features() -> InceptionFeatures:
    return InceptionFeatures(pool=np.zeros((0, POOL_DIM)), logits=np.zeros((0, NUM_LOGITS)))
