"""The degradation model, Eq. 1.1: x = (y * k)↓s + n, and the bicubic upsampling of its output.

`degrade_image` makes an LR image x from an HR image y; `medsr.pixels.bicubic_upsample` maps LR back to
the HR grid. The bicubic baseline and the diffusion model (its LR conditioning and residual base) both use
it, so they see the same upsampling.

Grid alignment: `bicubic_upsample` (align_corners=False) places LR pixel i at the centre of HR pixels
s*i .. s*i+s-1. The downsampling ↓s therefore samples the blurred image at those centres: it averages
each s x s block (area downsampling), i.e. decimation of y * k with k = Gaussian ∗ box(s), the box
being each LR pixel's integration over its footprint. Plain decimation y[::s] would shift every LR
image by (s-1)/2 HR pixels against its bicubic upsampling and its HR image, which would handicap the
bicubic baseline for no reason. The box also removes what the Gaussian leaves at the HR Nyquist
frequency, so a small blur_sigma is enough against aliasing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from medsr import io
from medsr.config import DegradeParams
from medsr.errors import MedsrError
from medsr.pixels import bicubic_upsample, quantize
from medsr.randomness import torch_generator


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """A normalized 1-D Gaussian of std `sigma` (pixels), truncated at 3 sigma."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, 1, H, W] images with reflected borders; sigma 0 is the identity."""
    if sigma <= 0:
        return images
    kernel = gaussian_kernel1d(sigma).to(images)
    radius = kernel.numel() // 2
    if radius >= min(images.shape[-2:]):
        raise MedsrError(f"degrade.blur_sigma: {sigma} is too wide for {tuple(images.shape[-2:])} images")
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def downsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    """↓s: the mean of each s x s block, i.e. a sample at each LR pixel centre (see the module docstring)."""
    height, width = images.shape[-2:]
    if height % scale or width % scale:
        raise MedsrError(f"degrade.scale: {scale} does not divide the image size {height}x{width}")
    return F.avg_pool2d(images, kernel_size=scale, stride=scale)


def degrade_image(hr: torch.Tensor, scale: int, blur_sigma: float, noise_std: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """LR images [N, 1, H/s, W/s] in [0, 1] from HR images [N, 1, H, W] in [0, 1]."""
    if hr.ndim != 4 or hr.shape[1] != 1:
        raise ValueError(f"degrade_image expects [N, 1, H, W] images, got {tuple(hr.shape)}")
    blurred = gaussian_blur(hr, blur_sigma)  # Eq. 1.1: y * k, Gaussian kernel k of std blur_sigma
    lr = downsample(blurred, scale)  # Eq. 1.1: ↓s, one sample per s x s block
    if noise_std > 0:  # Eq. 1.1: + n, additive white Gaussian noise of std noise_std
        lr = lr + noise_std * torch.randn(lr.shape, generator=generator, dtype=lr.dtype, device=lr.device)
    return lr.clamp(0.0, 1.0)


def run(degrade: DegradeParams, hr: Path, lr: Path, bicubic: Path) -> None:
    """Write the LR set (Eq. 1.1) and its bicubic upsampling for every train and test image."""
    hr, lr, bicubic = Path(hr), Path(lr), Path(bicubic)
    records = io.read_manifest(hr)
    metadata = {"degradation": "Eq. 1.1: x = (y * k) downsampled by s, plus n", "scale": degrade.scale,
                "blur_sigma": degrade.blur_sigma, "noise_std": degrade.noise_std, "seed": degrade.seed,
                "kernel": "Gaussian(blur_sigma) then mean of each s x s block (LR pixel centres)",
                "bicubic": "torch bicubic, align_corners=False, clamped to [0, 1]", "hr": str(hr)}
    with io.atomic_dir(lr) as lr_tmp, io.atomic_dir(bicubic) as bicubic_tmp:
        lr_records, bicubic_records = [], []
        for record in records:
            image = torch.from_numpy(io.read_record_image(hr, record))[None, None]  # checked against its sha256
            if image.shape[-1] % degrade.scale or image.shape[-2] % degrade.scale:
                raise MedsrError(f"{io.image_path(hr, record)}: size {tuple(image.shape[-2:])} is not a "
                                 f"multiple of degrade.scale {degrade.scale}")
            low = quantize(degrade_image(image, degrade.scale, degrade.blur_sigma, degrade.noise_std,
                                         torch_generator(degrade.seed, record.id)))
            up = bicubic_upsample(low, degrade.scale)
            for root, out, kept in ((lr_tmp, low, lr_records), (bicubic_tmp, up, bicubic_records)):
                relative = io.relative_image_path(record.split, record.label, record.id)
                io.write_image(root / relative, out[0, 0].numpy())
                kept.append(io.Record(record.id, record.split, record.label, relative,
                                      io.sha256_file(root / relative), str(io.image_path(hr, record))))
        io.write_manifest(lr_tmp, lr_records)
        io.write_manifest(bicubic_tmp, bicubic_records)
        io.write_json(lr_tmp / "metadata.json", {**metadata, "set": "lr"})
        io.write_json(bicubic_tmp / "metadata.json", {**metadata, "set": "bicubic"})

