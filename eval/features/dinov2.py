"""DINOv2 ViT-L/14 features for FD-DINOv2 and PR/DC, from the published `dinov2_vitl14_pretrain.pth`.

Stein et al. (NeurIPS 2023, "Exposing flaws of generative model evaluation metrics") found that the
Frechet distance on DINOv2 ViT-L/14 features tracks human judgement better than Inception's. Their
code (dgm-eval) runs `torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')`; this module is a plain
torch twin of that network, so no hub code is downloaded or run:

- the file is a plain state dict (torch hub loads it with `load_state_dict(strict=True)`), read here with
  `torch.load(weights_only=True)` only, after the same folder checks as every network file;
- the layout is detected from the file: width from `cls_token`, depth from `blocks.N.`, patch size from
  `patch_embed.proj.weight`, the trained grid (37 x 37 for the 518 px hub model) from `pos_embed`, and one
  attention head per 64 channels (every DINOv2 backbone: S 6, B 12, L 16, g 24 heads), so a reduced
  stand-in with the same key names loads through the same code;
- preprocessing is dgm-eval's default: each RGB image resized to 224 x 224 with PIL bicubic on the uint8
  image (torchvision `Resize` on a PIL image), scaled to [0, 1], ImageNet mean/std normalisation;
- the feature is the CLS token after the final LayerNorm (the hub model's `forward`, `head` = identity);
- `pos_embed` is resized from the trained grid to 16 x 16 as DINOv2 does: bicubic, no antialias, with the
  scale factor (16 + 0.1) / 37 (DINOv2's `interpolate_offset` of 0.1) passed to `interpolate`.

Only the no-register backbone with an MLP feed-forward (ViT-S/B/L) is accepted: the `_reg4` files and the
SwiGLU ViT-g are refused with the keys that differ.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganplug.device import Runtime
from ganplug.eval.features.prep_pool import PrepPool
from ganplug.eval.features.weights import FoundWeights, WeightsError, check_safe_to_load

NAME = "dinov2-vitl14"  # the feature space, as results name it
INPUT_SIZE = 224  # dgm-eval resizes every image to 224 x 224
MEAN = (0.485, 0.456, 0.406)  # ImageNet (timm IMAGENET_DEFAULT_MEAN), as dgm-eval
STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64  # channels per attention head in every DINOv2 backbone
LN_EPS = 1e-6  # DINOv2 LayerNorm epsilon
INTERPOLATE_OFFSET = 0.1  # DINOv2 hub models: interpolate_offset=0.1, interpolate_antialias=False
MLP_RATIO = 4


@dataclass(frozen=True)
class ViTShape:
    """What the file says about the network (nothing here is guessed from the file name)."""

    dim: int
    depth: int
    patch: int
    grid: int  # side of the positional-embedding grid the model was trained at (37 for the hub files)

    @property
    def heads(self) -> int:
        return self.dim // HEAD_DIM


BLOCK_KEYS = {  # per block: name -> shape as a function of the width d
    "norm1.weight": lambda d: (d,), "norm1.bias": lambda d: (d,),
    "attn.qkv.weight": lambda d: (3 * d, d), "attn.qkv.bias": lambda d: (3 * d,),
    "attn.proj.weight": lambda d: (d, d), "attn.proj.bias": lambda d: (d,),
    "ls1.gamma": lambda d: (d,),
    "norm2.weight": lambda d: (d,), "norm2.bias": lambda d: (d,),
    "mlp.fc1.weight": lambda d: (MLP_RATIO * d, d), "mlp.fc1.bias": lambda d: (MLP_RATIO * d,),
    "mlp.fc2.weight": lambda d: (d, MLP_RATIO * d), "mlp.fc2.bias": lambda d: (d,),
    "ls2.gamma": lambda d: (d,),
}


def expected_shapes(shape: ViTShape) -> dict[str, tuple[int, ...]]:
    """Every key of a published no-register DINOv2 backbone file, with its shape."""
    d = shape.dim
    out = {"cls_token": (1, 1, d), "pos_embed": (1, shape.grid ** 2 + 1, d), "mask_token": (1, d),
           "patch_embed.proj.weight": (d, 3, shape.patch, shape.patch), "patch_embed.proj.bias": (d,),
           "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(shape.depth):
        out.update({f"blocks.{i}.{k}": f(d) for k, f in BLOCK_KEYS.items()})
    return out


def detect_shape(state: dict[str, torch.Tensor], where: str = "the file") -> ViTShape:
    """Read width, depth, patch and grid from the tensors; refuse anything that is not the published layout."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in state or not isinstance(state[key], torch.Tensor):
            raise WeightsError(f"{where} is not a DINOv2 backbone state dict: no tensor {key!r} "
                               f"(keys start {sorted(state)[:5]}).")
    dim = int(state["cls_token"].shape[-1])
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    tokens = int(state["pos_embed"].shape[1]) - 1
    grid = math.isqrt(max(tokens, 0))
    if dim % HEAD_DIM or grid * grid != tokens or depth == 0:
        raise WeightsError(f"{where}: width {dim}, {tokens} position tokens and {depth} blocks do not make a "
                           f"DINOv2 backbone (width a multiple of {HEAD_DIM}, a square grid, at least one block).")
    shape = ViTShape(dim, depth, patch, grid)
    want = expected_shapes(shape)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = sorted(k for k in want if k in state and tuple(state[k].shape) != want[k])
    if missing or extra or wrong:
        hint = ""
        if "register_tokens" in extra:
            hint = " It has register tokens (a `_reg4` file); FD-DINOv2 uses dinov2_vitl14 without registers."
        elif any(".mlp.w12." in k for k in extra):
            hint = " It has a SwiGLU feed-forward (ViT-g); FD-DINOv2 uses ViT-L/14."
        raise WeightsError(f"{where} does not have the layout of dinov2_vitl14_pretrain.pth: missing "
                           f"{missing[:4]}, unexpected {extra[:4]}, wrong shape {wrong[:4]}.{hint}")
    return shape


# ----------------------------------------------------------------------------------------- the network


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with one packed qkv projection (q, k, v, each head-major)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k' / sqrt(head dim)) v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, MLP_RATIO * dim)
        self.fc2 = nn.Linear(MLP_RATIO * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, nn.GELU's default


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, tokens, dim], row-major patches


class DinoV2ViT(nn.Module):
    """The DINOv2 backbone with the hub model's parameter names; `forward` returns the normed CLS token."""

    def __init__(self, shape: ViTShape) -> None:
        super().__init__()
        self.shape = shape
        d = shape.dim
        self.patch_embed = PatchEmbed(d, shape.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, shape.grid ** 2 + 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # only used in training (masked patches); kept to load
        self.blocks = nn.ModuleList(Block(d, shape.heads) for _ in range(shape.depth))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """pos_embed for a rows x cols patch grid, resized from the trained grid the way DINOv2 does."""
        m = self.shape.grid
        if rows == m and cols == m:
            return self.pos_embed
        pos = self.pos_embed.float()
        patches = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        scale = ((rows + INTERPOLATE_OFFSET) / m, (cols + INTERPOLATE_OFFSET) / m)
        patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", antialias=False)
        assert patches.shape[-2:] == (rows, cols), patches.shape
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos[:, :1], patches), dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """CLS + patch tokens with position embeddings, before the blocks."""
        _, _, h, w = x.shape
        p = self.shape.patch
        assert h % p == 0 and w % p == 0, f"input {h}x{w} is not a multiple of the patch size {p}"
        t = self.patch_embed(x)
        t = torch.cat((self.cls_token.expand(len(t), -1, -1).to(t.dtype), t), dim=1)
        return t + self.position_embedding(h // p, w // p).to(t.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 0]


# ----------------------------------------------------------------------------------------- loading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors, unpickled by torch's weights-only loader (nothing in the file can run)."""
    check_safe_to_load(path, "DINOv2 weights file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "not a readable state dict"
        raise WeightsError(f"{path} is not a readable weights-only PyTorch state dict ({type(e).__name__}: "
                           f"{str(e)[:200]}); download dinov2_vitl14_pretrain.pth again.") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a plain state dict of tensors; it is not a DINOv2 backbone file.")
    return state


def load_dinov2(path: str | Path) -> DinoV2ViT:
    """Build the network the file describes and load it strictly, in float32, eval mode."""
    state = read_state_dict(path)
    model = DinoV2ViT(detect_shape(state, str(path)))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------- features


def preprocess(image: np.ndarray) -> np.ndarray:
    """dgm-eval's default transform for one HWC uint8 RGB image: PIL bicubic to 224 x 224 on the uint8
    image, / 255, ImageNet normalisation. Returns CHW float32."""
    x = np.asarray(Image.fromarray(image).resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC), dtype=np.float32)
    x = (x / 255.0 - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class DinoV2Extractor:
    """Loaded once, fed many batches: HWC uint8 RGB arrays (any sizes) -> [N, width] CLS features, float64."""

    name = NAME

    def __init__(self, found: FoundWeights, runtime: Runtime, workers: int = 2) -> None:
        self.found, self.runtime = found, runtime
        self.model = load_dinov2(found.path).to(runtime.device)
        self.dim = self.model.shape.dim
        self.prep = PrepPool(workers)

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.prep.stack(preprocess, images)

    @torch.no_grad()
    def extract(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim))
        x = self.prepare(images).to(self.runtime.device)
        return self.model(x).to(torch.float64).cpu().numpy()


# ----------------------------------------------------------------------------------------- stand-in files


def standin_state_dict(*, dim: int = 128, depth: int = 2, patch: int = 14, grid: int = 37,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random tensors with the published key names and shape relations, at a reduced width/depth.
    Numbers made with them are not comparable to anything published."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shp in expected_shapes(ViTShape(dim, depth, patch, grid)).items():
        if key.endswith(("norm1.weight", "norm2.weight")) or key == "norm.weight":
            t = 1.0 + 0.1 * torch.randn(shp, generator=gen)
        elif key.endswith(".gamma"):
            t = 0.1 + 0.05 * torch.randn(shp, generator=gen)  # trained layer scales are small
        elif key.endswith(".weight") and len(shp) >= 2:
            fan_in = int(np.prod(shp[1:]))
            t = torch.randn(shp, generator=gen) / math.sqrt(fan_in)
        else:
            t = 0.02 * torch.randn(shp, generator=gen)
        state[key] = t
    return state


def save_standin_dinov2(path: str | Path, *, dim: int = 128, depth: int = 2, seed: int = 0) -> Path:
    """Write a `dinov2_vitl14_pretrain.pth` look-alike (a plain state dict, marked as a ganplug stand-in)."""
    from ganplug.eval.features.standin import _mark

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(standin_state_dict(dim=dim, depth=depth, seed=seed), str(path))
    _mark(path, seed)
    return path
