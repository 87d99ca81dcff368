"""The denoiser: a U-Net conditioned on the timestep, the class (FiLM) and the LR image.

Every part is switched by `sr_model` params (`UNetParams`). The same network, built with
`time_conditional=False, class_conditional=False`, is the one-pass regression baseline.

Conditioning inputs, all checked (a condition the model was not built for raises; diffusers #5330):
  t              (N,) timestep indices 0..T-1        -> sinusoidal PE (Eq. 3.4-3.5) -> MLP -> added in every block
  class_labels   (N,) 0 healthy, 1 unhealthy, 2 null -> embedding -> FiLM (gamma, beta) in every block
  lr_upsampled   (N,1,H,W) bicubic LR at x's size, in [-1, 1] -> resized to every level, then
                 `concat`: concatenated to every block's conv input (and the input conv), or
                 `add`: added to every block's input (the seed code's injection)

The end of this module rebuilds a trained U-Net (diffusion SR or regression baseline) from its safetensors file
(`load_unet`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsr.core.config import section_from_dict
from medsr.core.errors import MedsrError
from medsr.core.io import Record, image_path, load_images, sha256_file
from medsr.core.model_files import load_model_file
from medsr.core.parameters import NULL_CLASS, DiffusionParams, UNetParams
from medsr.data.pixels import bicubic_upsample
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.schedule import DiffusionSchedule, process_schedule


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    # Eq. 3.4-3.5: PE(t)_{2i} = sin(t / 10000^{2i/D}), PE(t)_{2i+1} = cos(t / 10000^{2i/D})
    i = torch.arange(dim // 2, device=t.device, dtype=torch.float32)
    angles = t.float()[:, None] / max_period ** (2 * i / dim)[None, :]
    pe = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(len(t), -1)
    return F.pad(pe, (0, dim % 2))


class ResBlock(nn.Module):
    """GN -> SiLU -> conv3 (+ time) -> GN -> FiLM(class) -> SiLU -> dropout -> conv3, plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, *, groups: int, dropout: float, lr_injection: str | None,
                 time_dim: int | None, class_dim: int | None):
        super().__init__()
        self.lr_injection = lr_injection
        extra = 1 if lr_injection == "concat" else 0
        self.norm1 = nn.GroupNorm(_groups(groups, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch + extra, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_ch) if time_dim else None
        self.norm2 = nn.GroupNorm(_groups(groups, out_ch), out_ch)
        self.film = nn.Linear(class_dim, 2 * out_ch) if class_dim else None  # FiLM: gamma, beta per channel
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, time_emb, class_emb, lr_level):
        if self.lr_injection == "add":
            x = x + lr_level  # broadcast over channels, as the seed code
        h = F.silu(self.norm1(x))
        if self.lr_injection == "concat":
            h = torch.cat([h, lr_level], dim=1)
        h = self.conv1(h)
        if self.time_proj is not None:
            h = h + self.time_proj(time_emb)[:, :, None, None]
        h = self.norm2(h)
        if self.film is not None:
            gamma, beta = self.film(class_emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + gamma) + beta  # FiLM (Perez et al. 2018)
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over pixels, pre-norm, residual."""

    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V (Vaswani et al. 2017, Eq. 1), no dropout.

    Fused SDPA everywhere, except when gradients are taken on CUDA under `torch.use_deterministic_algorithms`:
    there SDPA may pick the memory-efficient kernel, whose backward accumulates with atomics (not bitwise
    reproducible; torch only warns under warn_only=True), so the product is written out instead (plain matmuls
    and softmax, deterministic under deterministic cuBLAS). The CPU path is always SDPA, unchanged."""
    if needs_deterministic_backward(q):
        return explicit_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def needs_deterministic_backward(q) -> bool:
    """Gradients taken on CUDA under deterministic algorithms (train-sr's deterministic mode)."""
    return q.is_cuda and torch.is_grad_enabled() and torch.are_deterministic_algorithms_enabled()


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V as two matmuls and a softmax taken in (at least) float32. Q is scaled before the
    product: no extra N x N tensor, and no fp16 overflow of unscaled scores under fp16 autocast."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    weights = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(dim=-1)
    return torch.matmul(weights.to(v.dtype), v)


def _groups(groups: int, ch: int) -> int:
    return math.gcd(groups, ch)


class UNet(nn.Module):
    def __init__(self, params: UNetParams, *, time_conditional: bool = True, class_conditional: bool = True,
                 lr_conditional: bool = True, in_channels: int = 1, out_channels: int = 1,
                 num_classes: int = NULL_CLASS + 1):
        super().__init__()
        self.params = params
        self.time_conditional = time_conditional
        self.class_conditional = class_conditional
        self.lr_injection = params.lr_injection if lr_conditional else None
        self.num_classes = num_classes
        base = params.base_channels
        widths = [base * m for m in params.channel_mult]
        self.levels = len(widths)
        emb_dim = 4 * base
        time_dim = emb_dim if time_conditional else None
        class_dim = emb_dim if class_conditional else None
        if time_conditional:
            self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if class_conditional:
            self.class_embedding = nn.Embedding(num_classes, emb_dim)

        def block(i, o):
            return ResBlock(i, o, groups=params.norm_groups, dropout=params.dropout,
                            lr_injection=self.lr_injection, time_dim=time_dim, class_dim=class_dim)

        def attention(ch):
            return SelfAttention(ch, params.attention_heads, params.norm_groups)

        self.conv_in = nn.Conv2d(in_channels + (self.lr_injection == "concat"), base, 3, padding=1)
        self.down_blocks, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        ch = base
        for level, width in enumerate(widths):
            self.down_blocks.append(nn.ModuleList([block(ch if b == 0 else width, width)
                                                   for b in range(params.num_res_blocks)]))
            self.down_attn.append(attention(width) if level in params.attention_levels else nn.Identity())
            last = level == self.levels - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1))
            ch = width
        self.mid_blocks = nn.ModuleList([block(ch, ch), block(ch, ch)])
        self.mid_attn = attention(ch) if params.mid_attention else nn.Identity()
        self.upsample, self.up_blocks, self.up_attn = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(self.levels)):
            width = widths[level]
            last = level == self.levels - 1
            self.upsample.append(nn.Identity() if last else nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1))
            self.up_blocks.append(nn.ModuleList([block(ch + width if b == 0 else width, width)
                                                 for b in range(params.num_res_blocks)]))
            self.up_attn.append(attention(width) if level in params.attention_levels else nn.Identity())
            ch = width
        self.out_attn = attention(ch) if params.out_attention else nn.Identity()
        self.head = nn.Sequential(nn.GroupNorm(_groups(params.norm_groups, ch), ch), nn.SiLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, out_channels, 1))

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def _check(self, x, t, class_labels, lr_upsampled) -> None:
        """Every conditioning input must match how the model was built (diffusers #5330)."""
        if self.time_conditional != (t is not None):
            raise ValueError("t given to a model built without time conditioning" if t is not None
                             else "this model needs the timestep t")
        if self.class_conditional != (class_labels is not None):
            raise ValueError("class_labels given to a model built without class conditioning"
                             if class_labels is not None else
                             f"this model needs class_labels (use {NULL_CLASS}, the null class, for none)")
        if (self.lr_injection is not None) != (lr_upsampled is not None):
            raise ValueError("lr_upsampled given to a model built without LR conditioning"
                             if lr_upsampled is not None else "this model needs lr_upsampled")
        if class_labels is not None and (class_labels.min() < 0 or class_labels.max() >= self.num_classes):
            raise ValueError(f"class_labels must be in 0..{self.num_classes - 1}, got {class_labels.tolist()}")
        if lr_upsampled is not None and (lr_upsampled.ndim != 4 or lr_upsampled.shape[1] != 1):
            raise ValueError(f"lr_upsampled must be [N, 1, H, W] (one grey channel), got {tuple(lr_upsampled.shape)}")
        if lr_upsampled is not None and lr_upsampled.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"lr_upsampled {tuple(lr_upsampled.shape)} must be x's size {tuple(x.shape)}")
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(f"image sides {tuple(x.shape[-2:])} must be multiples of {self.size_multiple}")

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, *, class_labels: torch.Tensor | None = None,
                lr_upsampled: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, t, class_labels, lr_upsampled)
        time_emb = self.time_mlp(sinusoidal_embedding(t, self.params.base_channels)) if t is not None else None
        class_emb = self.class_embedding(class_labels) if class_labels is not None else None
        lr_levels = [None] * self.levels
        if lr_upsampled is not None:
            lr_levels = [F.avg_pool2d(lr_upsampled, 2 ** lv) if lv else lr_upsampled for lv in range(self.levels)]
            if self.lr_injection == "concat":
                x = torch.cat([x, lr_upsampled], dim=1)
        h = self.conv_in(x)
        skips = []
        for level in range(self.levels):
            for blk in self.down_blocks[level]:
                h = blk(h, time_emb, class_emb, lr_levels[level])
            h = self.down_attn[level](h)
            skips.append(h)
            h = self.downsample[level](h)
        h = self.mid_blocks[0](h, time_emb, class_emb, lr_levels[-1])
        h = self.mid_attn(h)
        h = self.mid_blocks[1](h, time_emb, class_emb, lr_levels[-1])
        for i, level in enumerate(reversed(range(self.levels))):
            h = self.upsample[i](h)
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in self.up_blocks[i]:
                h = blk(h, time_emb, class_emb, lr_levels[level])
            h = self.up_attn[i](h)
        h = self.out_attn(h)
        return self.head(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- a trained U-Net, rebuilt from its file ------------------------------------------------------------------
# kind -> which conditionings the network was built with (time, class, LR)
STUDENT_KEY = "student"  # the metadata key that marks a distilled one-step student (medsr.stages.train_student)
KINDS = {"sr_diffusion": (True, True, True), "sr_regression": (False, False, True)}


def build_unet(params: UNetParams, kind: str) -> UNet:
    time, cls, lr = KINDS[kind]
    return UNet(params, time_conditional=time, class_conditional=cls, lr_conditional=lr)


@dataclass
class LoadedUNet:
    model: UNet
    metadata: dict[str, Any]
    sha256: str
    schedule: DiffusionSchedule | ResShiftSchedule | None  # the diffusion model's schedule (None for regression)

    @property
    def scale(self) -> int:
        return int(self.metadata["scale"])

    @property
    def process(self) -> str:
        """diffusion.process the model was trained with: ddpm | resshift (it decides the sampler)."""
        return self.metadata["diffusion"]["process"]

    @property
    def target(self) -> str:
        return self.metadata["diffusion"]["target"]

    def bicubic_input(self, lr_root: Path, records: Sequence[Record]) -> torch.Tensor:
        """The LR images of `records`, bicubic-upsampled as in training: [N, 1, H, W] on the model's device."""
        low = torch.from_numpy(load_images(lr_root, records))[:, None]
        expected = tuple(self.metadata["lr_size"])
        if tuple(low.shape[-2:]) != expected:
            raise MedsrError(f"{image_path(lr_root, records[0])}: LR image is {tuple(low.shape[-2:])}, the model "
                             f"was trained on {expected} LR images (scale {self.scale})")
        return bicubic_upsample(low, self.scale).to(next(self.model.parameters()).device)


def load_unet(path: str | Path, kind: str, device: torch.device) -> LoadedUNet:
    """The network in eval mode on `device`, channels_last, with its metadata and file hash."""
    state, metadata = load_model_file(path)
    if metadata.get("kind") != kind:
        raise MedsrError(f"{path}: holds a {metadata.get('kind')!r} model, expected {kind!r}")
    params = section_from_dict(UNetParams, metadata["sr_model"])
    model = build_unet(params, kind)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise MedsrError(f"{path}: weights do not fit the U-Net in its metadata ({str(err).splitlines()[0]})") from err
    model = model.to(device, memory_format=torch.channels_last).eval()
    schedule = None
    if kind == "sr_diffusion":
        schedule = process_schedule(section_from_dict(DiffusionParams, metadata["diffusion"]))
    return LoadedUNet(model, metadata, sha256_file(path), schedule)
