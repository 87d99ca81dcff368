"""The degradation models, Eq. 1.1: x = (y * k)↓s + n (degrade.model gaussian), or the MRI acquisition of fewer
k-space lines (degrade.model kspace, `kspace_degrade`), and the bicubic upsampling of their output.

`degrade_image` makes an LR image x from an HR image y; `medsr.data.pixels.bicubic_upsample` maps LR back to
the HR grid. The bicubic baseline and the diffusion model (its LR conditioning and residual base) both use
it, so they see the same upsampling.

Grid alignment: `bicubic_upsample` (align_corners=False) places LR pixel i at the centre of HR pixels
s*i .. s*i+s-1. The downsampling ↓s therefore samples the blurred image at those centres: it averages
each s x s block (area downsampling), i.e. decimation of y * k with k = Gaussian ∗ box(s), the box
being each LR pixel's integration over its footprint. Plain decimation y[::s] would shift every LR
image by (s-1)/2 HR pixels against its bicubic upsampling and its HR image, which would handicap the
bicubic baseline for no reason. The box also removes what the Gaussian leaves at the HR Nyquist
frequency, so a small blur_sigma is enough against aliasing.

The kspace model is the field's standard simulation of a low-resolution MRI acquisition (e.g. Chen et al. 2018,
"Brain MRI super resolution using 3D deep densely connected neural networks"; Zhao et al. 2019, SMORE):

    x = | F_h^-1( W . C_s( P . F_H y ) ) + n |,   n = sigma (n_re + i n_im),  n_re, n_im ~ N(0, 1)

F_H: the 2-D DFT of the H x W HR image normalised by 1/(HW) ("forward" norm) and F_h^-1 the inverse DFT on the
h x w = H/s x W/s grid without normalisation, so a constant image keeps its intensity; C_s: the central h x w
block of the centred k-space, with the LR Nyquist row and column set to zero (the kept frequencies are then
symmetric, |k| < h/2, and the result of a real image is real); P: the phase ramp exp(2 pi i k (s-1) / (2H)) per
axis, which moves the LR samples to the centres of the s x s HR blocks, the grid `bicubic_upsample` assumes (as
the gaussian model's area downsampling does); W: an optional separable window over the kept frequencies
(kspace_window: hamming, or tukey with alpha = TUKEY_ALPHA) against Gibbs ringing; n: complex white Gaussian noise
of std sigma = noise_std per component. The magnitude of signal A plus such noise is Rician(A, sigma) (Gudbjartsson
& Patz 1995); on a zero image it is Rayleigh, of mean sigma sqrt(pi / 2).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.signal import get_window

import torch
import torch.nn.functional as F

from medsr.core import io
from medsr.core.parameters import DegradeParams
from medsr.core.errors import MedsrError
from medsr.data.pixels import bicubic_upsample, quantize
from medsr.core.randomness import numpy_rng, torch_generator


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


TUKEY_ALPHA = 0.5  # the tapered share of the Tukey window (0: none, 1: Hann)


def _window1d(kind: str, n: int) -> np.ndarray:
    """W along one axis, over the n kept frequencies in centred order (1 = no weighting)."""
    if kind == "none":
        return np.ones(n)
    window = ("tukey", TUKEY_ALPHA) if kind == "tukey" else "hamming"
    return get_window(window, n + 1, fftbins=False)[:n] if n % 2 == 0 else get_window(window, n, fftbins=False)


def kspace_degrade(hr: np.ndarray, scale: int, noise_std: float, window: str = "none",
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """The kspace model (module docstring) of one H x W image: the h x w LR magnitude image, clipped to [0, 1]."""
    height, width = hr.shape
    if height % scale or width % scale:
        raise MedsrError(f"degrade.scale: {scale} does not divide the image size {height}x{width}")
    h, w = height // scale, width // scale
    spectrum = np.fft.fftshift(np.fft.fft2(np.asarray(hr, dtype=np.float64), norm="forward"))  # F_H y, centred
    ky = np.arange(height) - height // 2  # the centred frequency index of each row of `spectrum`
    kx = np.arange(width) - width // 2
    phase = np.exp(2j * np.pi * ky[:, None] * (scale - 1) / (2 * height)) \
        * np.exp(2j * np.pi * kx[None, :] * (scale - 1) / (2 * width))  # P: LR samples at HR block centres
    top, left = height // 2 - h // 2, width // 2 - w // 2
    kept = (phase * spectrum)[top:top + h, left:left + w].copy()  # C_s: the central h x w lines
    if h % 2 == 0:
        kept[0, :] = 0  # the LR Nyquist row (k = -h/2) has no +h/2 partner: dropped, the kept band is symmetric
    if w % 2 == 0:
        kept[:, 0] = 0
    kept *= _window1d(window, h)[:, None] * _window1d(window, w)[None, :]  # W
    image = np.fft.ifft2(np.fft.ifftshift(kept), norm="forward")  # F_h^-1 without 1/(hw): intensities keep scale
    if noise_std > 0:  # n: complex white Gaussian noise, sigma per real and imaginary part
        rng = rng if rng is not None else np.random.default_rng()
        image = image + noise_std * (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w)))
    return np.clip(np.abs(image), 0.0, 1.0).astype(np.float32)  # magnitude: Rician


def degrade_record(degrade: DegradeParams, image: torch.Tensor, image_id: str) -> torch.Tensor:
    """The LR image [1, 1, h, w] of the model degrade.model, its noise keyed by (degrade.seed, image id)."""
    if degrade.model == "kspace":
        rng = numpy_rng("kspace-noise", degrade.seed, image_id)
        return torch.from_numpy(kspace_degrade(image[0, 0].numpy(), degrade.scale, degrade.noise_std,
                                               degrade.kspace_window, rng))[None, None]
    return degrade_image(image, degrade.scale, degrade.blur_sigma, degrade.noise_std,
                         torch_generator(degrade.seed, image_id))


def run(degrade: DegradeParams, hr: Path, lr: Path, bicubic: Path) -> None:
    """Write the LR set (degrade.model) and its bicubic upsampling for every train, val and test image."""
    hr, lr, bicubic = Path(hr), Path(lr), Path(bicubic)
    records = io.read_manifest(hr)
    if degrade.model == "kspace":
        model = {"degradation": "kspace: x = |F^-1( W . C_s( P . F y ) ) + n|, n complex Gaussian (magnitude: Rician)",
                 "kept": "central 1/s of k-space per axis, LR Nyquist line zeroed; phase ramp P puts LR samples at "
                         "HR block centres", "window": degrade.kspace_window,
                 "tukey_alpha": TUKEY_ALPHA if degrade.kspace_window == "tukey" else None,
                 "noise_std": degrade.noise_std, "blur_sigma": "unused by kspace"}
    else:
        model = {"degradation": "Eq. 1.1: x = (y * k) downsampled by s, plus n", "blur_sigma": degrade.blur_sigma,
                 "noise_std": degrade.noise_std,
                 "kernel": "Gaussian(blur_sigma) then mean of each s x s block (LR pixel centres)"}
    metadata = {"model": degrade.model, **model, "scale": degrade.scale, "seed": degrade.seed,
                "bicubic": "torch bicubic, align_corners=False, clamped to [0, 1]", "hr": str(hr)}
    with io.atomic_dir(lr) as lr_tmp, io.atomic_dir(bicubic) as bicubic_tmp:
        lr_records, bicubic_records = [], []
        for record in records:
            image = torch.from_numpy(io.read_record_image(hr, record))[None, None]  # checked against its sha256
            if image.shape[-1] % degrade.scale or image.shape[-2] % degrade.scale:
                raise MedsrError(f"{io.image_path(hr, record)}: size {tuple(image.shape[-2:])} is not a "
                                 f"multiple of degrade.scale {degrade.scale}")
            low = quantize(degrade_record(degrade, image, record.id))
            up = bicubic_upsample(low, degrade.scale)
            for root, out, kept in ((lr_tmp, low, lr_records), (bicubic_tmp, up, bicubic_records)):
                relative = io.relative_image_path(record.split, record.label, record.id)
                io.write_image(root / relative, out[0, 0].numpy())
                kept.append(io.Record(record.id, record.split, record.label, relative,
                                      io.sha256_file(root / relative), str(io.image_path(hr, record)),
                                      record.subject))
        io.write_manifest(lr_tmp, lr_records)
        io.write_manifest(bicubic_tmp, bicubic_records)
        io.write_json(lr_tmp / "metadata.json", {**metadata, "set": "lr"})
        io.write_json(bicubic_tmp / "metadata.json", {**metadata, "set": "bicubic"})

