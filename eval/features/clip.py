"""CLIP ViT-L/14@336px image embeddings for CMMD, from OpenAI's published `ViT-L-14-336px.pt`.

CMMD (Jayasumana et al., CVPR 2024, "Rethinking FID") compares L2-normalised CLIP image embeddings. Its
reference code (google-research/cmmd) uses scenic's `vit_l14_336px`, whose weights scenic converts from
this very file: `torch.jit.load(ViT-L-14-336px.pt).state_dict()`, downloaded from OpenAI with the SHA-256
that is part of the URL (OpenAI's clip.py checks the same digest). So ganplug supports exactly that file:

- it is TorchScript, which runs code when loaded: it is loaded only with `torch.jit.load`, only after the
  folder checks every network file gets (`check_safe_to_load`: no file others could have written), and only
  its `visual.*` tensors are kept; they go into a plain torch twin here, and the scripted code is never run;
- the layout is detected from the tensors, as OpenAI's `build_model` does: width from `visual.conv1`, patch
  size, the grid from `visual.positional_embedding` (24 x 24 at 336 px), the layer count, the embedding
  width from `visual.proj`, one head per 64 channels; so a reduced stand-in with the same names loads too;
- preprocessing is CMMD's: the largest centred square is cropped, resized to 336 with PIL bicubic on the
  uint8 image, scaled to [0, 1] and normalised with CLIP's mean/std (the reference then resizes 336 -> 336
  bicubic, which changes nothing);
- the embedding is ln_post(CLS) @ proj, divided by its L2 norm (scenic `encode_image(normalize=True)`).
Blocks: x + attn(ln_1 x), x + mlp(ln_2 x), QuickGELU (x * sigmoid(1.702 x)), LayerNorm eps 1e-5.
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

NAME = "clip-vitl14-336"  # the feature space, as results name it
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's (OpenAI clip.py, scenic IMAGE_MEAN)
STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_DIM = 64  # OpenAI build_model / scenic: heads = width // 64
LN_EPS = 1e-5  # torch's LayerNorm default, which CLIP used
PREFIX = "visual."


@dataclass(frozen=True)
class ClipShape:
    width: int
    layers: int
    patch: int
    grid: int  # 24 for ViT-L/14@336px
    out: int  # embedding width (768 for ViT-L/14)

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    @property
    def resolution(self) -> int:
        return self.patch * self.grid


BLOCK_KEYS = {
    "attn.in_proj_weight": lambda w: (3 * w, w), "attn.in_proj_bias": lambda w: (3 * w,),
    "attn.out_proj.weight": lambda w: (w, w), "attn.out_proj.bias": lambda w: (w,),
    "ln_1.weight": lambda w: (w,), "ln_1.bias": lambda w: (w,),
    "mlp.c_fc.weight": lambda w: (4 * w, w), "mlp.c_fc.bias": lambda w: (4 * w,),
    "mlp.c_proj.weight": lambda w: (w, 4 * w), "mlp.c_proj.bias": lambda w: (w,),
    "ln_2.weight": lambda w: (w,), "ln_2.bias": lambda w: (w,),
}


def expected_shapes(shape: ClipShape) -> dict[str, tuple[int, ...]]:
    """Every `visual.` key of an OpenAI CLIP ViT file (prefix stripped), with its shape."""
    w = shape.width
    out = {"class_embedding": (w,), "positional_embedding": (shape.grid ** 2 + 1, w),
           "conv1.weight": (w, 3, shape.patch, shape.patch), "ln_pre.weight": (w,), "ln_pre.bias": (w,),
           "ln_post.weight": (w,), "ln_post.bias": (w,), "proj": (w, shape.out)}
    for i in range(shape.layers):
        out.update({f"transformer.resblocks.{i}.{k}": f(w) for k, f in BLOCK_KEYS.items()})
    return out


def detect_shape(visual: dict[str, torch.Tensor], where: str = "the file") -> ClipShape:
    """Read the vision tower's shape from its tensors; refuse anything that is not OpenAI's ViT layout."""
    if "proj" not in visual or "conv1.weight" not in visual or "positional_embedding" not in visual:
        raise WeightsError(f"{where} has no CLIP vision transformer (`visual.proj`, `visual.conv1.weight`, "
                           f"`visual.positional_embedding`); a ResNet CLIP or another model is not supported.")
    width, patch = int(visual["conv1.weight"].shape[0]), int(visual["conv1.weight"].shape[-1])
    tokens = int(visual["positional_embedding"].shape[0]) - 1
    grid = math.isqrt(max(tokens, 0))
    layers = len({int(m.group(1)) for k in visual if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    if width % HEAD_DIM or grid * grid != tokens or layers == 0 or visual["proj"].ndim != 2:
        raise WeightsError(f"{where}: width {width}, {tokens} position tokens and {layers} layers do not make a "
                           f"CLIP ViT (width a multiple of {HEAD_DIM}, a square grid, at least one layer).")
    shape = ClipShape(width, layers, patch, grid, int(visual["proj"].shape[1]))
    want = expected_shapes(shape)
    missing, extra = sorted(set(want) - set(visual)), sorted(set(visual) - set(want))
    wrong = sorted(k for k in want if k in visual and tuple(visual[k].shape) != want[k])
    if missing or extra or wrong:
        raise WeightsError(f"{where} does not have the layout of ViT-L-14-336px.pt: missing {missing[:4]}, "
                           f"unexpected {extra[:4]}, wrong shape {wrong[:4]} (names under `visual.`).")
    return shape


# ----------------------------------------------------------------------------------------- the network


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention's parameters (packed q, k, v in_proj; out_proj), computed with SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, w))


class Mlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width)
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class ClipVisual(nn.Module):
    """OpenAI CLIP's VisionTransformer with its parameter names (batch-first); forward -> unnormalised embedding."""

    def __init__(self, shape: ClipShape) -> None:
        super().__init__()
        self.shape = shape
        w = shape.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=shape.patch, stride=shape.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(shape.grid ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=LN_EPS)
        self.transformer = Transformer(w, shape.layers, shape.heads)
        self.ln_post = nn.LayerNorm(w, eps=LN_EPS)
        self.proj = nn.Parameter(torch.zeros(w, shape.out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv1(x).flatten(2).transpose(1, 2)  # [B, grid*grid, width]
        cls = self.class_embedding.to(t.dtype).expand(len(t), 1, -1)
        t = torch.cat((cls, t), dim=1) + self.positional_embedding.to(t.dtype)
        t = self.transformer(self.ln_pre(t))
        return self.ln_post(t[:, 0]) @ self.proj


# ----------------------------------------------------------------------------------------- loading


def read_visual_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The `visual.*` tensors of the TorchScript file (prefix stripped), in float32.

    torch.jit.load runs the file's TorchScript, so the file and its folder are checked first, as for the
    Inception file; the loaded module is used only for its state dict and then dropped."""
    check_safe_to_load(path, "TorchScript CLIP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as e:
        raise WeightsError(f"{path} is not a loadable TorchScript CLIP file ({str(e)[:200]}); download "
                           f"ViT-L-14-336px.pt again.") from None
    state = {k[len(PREFIX):]: v.detach().float() for k, v in scripted.state_dict().items() if k.startswith(PREFIX)}
    if not state:
        raise WeightsError(f"{path} is TorchScript but holds no `visual.` tensors; it is not an OpenAI CLIP file.")
    return state


def load_clip_visual(path: str | Path) -> ClipVisual:
    state = read_visual_state(path)
    model = ClipVisual(detect_shape(state, str(path)))
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------- embeddings


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square, with CMMD's offsets ((h - l) // 2, (w - l) // 2)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """CMMD's input for one HWC uint8 RGB image: centre square, PIL bicubic to `size` on the uint8 image,
    / 255, CLIP normalisation. Returns CHW float32."""
    sq = np.ascontiguousarray(centre_square(image))
    x = np.asarray(Image.fromarray(sq).resize((size, size), Image.BICUBIC), dtype=np.float32)
    x = (x / 255.0 - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class ClipExtractor:
    """Loaded once, fed many batches: HWC uint8 RGB arrays -> [N, 768] unit-length embeddings, float64."""

    name = NAME

    def __init__(self, found: FoundWeights, runtime: Runtime, workers: int = 2) -> None:
        self.found, self.runtime = found, runtime
        self.model = load_clip_visual(found.path).to(runtime.device)
        self.size, self.dim = self.model.shape.resolution, self.model.shape.out
        self.prep = PrepPool(workers)

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        return self.prep.stack(lambda im: preprocess(im, self.size), images)

    @torch.no_grad()
    def extract(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim))
        emb = self.model(self.prepare(images).to(self.runtime.device)).to(torch.float64)
        return (emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy()


# ----------------------------------------------------------------------------------------- stand-in files


class _ClipFile(nn.Module):
    """What a stand-in file holds: the vision tower under `visual.` (the text tower is not read by ganplug)."""

    def __init__(self, shape: ClipShape) -> None:
        super().__init__()
        self.visual = ClipVisual(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def save_standin_clip(path: str | Path, *, width: int = 64, layers: int = 2, out: int = 32, patch: int = 14,
                      grid: int = 24, seed: int = 0) -> Path:
    """Write a TorchScript `ViT-L-14-336px.pt` look-alike: seeded random weights under the published
    `visual.` names at a reduced width/depth, stored in float16 like OpenAI's files, marked as a stand-in."""
    from ganplug.eval.features.standin import _mark

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = ClipShape(width, layers, patch, grid, out)
    holder = _ClipFile(shape).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in holder.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2:
                fan_in = p.shape[0] if name == "visual.proj" else int(np.prod(p.shape[1:]))  # x @ proj
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    example = torch.zeros(1, 3, shape.resolution, shape.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(holder, example)
        traced.half()
        torch.jit.save(traced, str(path))
    _mark(path, seed)
    return path
