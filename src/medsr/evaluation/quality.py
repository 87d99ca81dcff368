"""Image quality against HR, per test image, on the [0, 1] intensity scale (data range 1).

PSNR = 10 log10(1 / MSE); SSIM with Wang et al. (2004)'s Gaussian window (sigma 1.5); LPIPS
(Zhang et al. 2018) only from local weights: nothing is downloaded, and without weights it is
recorded as skipped, never estimated some other way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from medsr.core.errors import MedsrError
from medsr.evaluation.metrics import estimate

LPIPS_KEY = "evaluate.lpips_weights"
LPIPS_SKIPPED = "evaluate.lpips_weights is empty: no local LPIPS weights (nothing is downloaded)"


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    return float(structural_similarity(np.asarray(image, np.float64), np.asarray(reference, np.float64),
                                       data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _infer_lpips_net(state: dict[str, torch.Tensor]) -> str:
    if "lin5.model.1.weight" in state:
        return "squeeze"
    first = state.get("net.slice1.0.weight")
    if first is None:
        raise MedsrError(f"{LPIPS_KEY}: the file holds no backbone weights (net.slice1.*): it must be a full "
                         "LPIPS state dict (backbone + linear layers)")
    return "alex" if first.shape[-1] == 11 else "vgg"


def load_lpips(path: str | Path) -> torch.nn.Module:
    """A full LPIPS network (backbone + linear heads) from a local .safetensors or .pth state dict."""
    from torchmetrics.functional.image.lpips import _LPIPS

    path = Path(path)
    if not path.is_file():
        raise MedsrError(f"{LPIPS_KEY}: {path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch raise several types for bad files
        raise MedsrError(f"{LPIPS_KEY}: {path}: unreadable weights ({type(err).__name__})") from err
    net = _LPIPS(pretrained=False, net=_infer_lpips_net(state), pnet_rand=True)  # random init: no download
    state = {k: v for k, v in state.items() if not k.startswith("lins.")}  # `lins.N` aliases `linN`
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise MedsrError(f"{LPIPS_KEY}: {path}: weights do not fit LPIPS ({str(err).splitlines()[0]})") from err
    missing = [k for k in result.missing_keys if not k.startswith("lins.")]
    if missing or result.unexpected_keys:
        what = f"missing {missing[0]}" if missing else f"unexpected {result.unexpected_keys[0]}"
        raise MedsrError(f"{LPIPS_KEY}: {path}: not a full LPIPS state dict ({what})")
    return net.eval()


def lpips_per_image(net: torch.nn.Module, images: np.ndarray, references: np.ndarray,
                    batch_size: int = 32) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).float()[:, None].repeat(1, 3, 1, 1)
            y = torch.from_numpy(references[start:start + batch_size]).float()[:, None].repeat(1, 3, 1, 1)
            out.append(net(x, y, normalize=True).reshape(-1).numpy())
    return np.concatenate(out).astype(np.float64)


def weighted_mean_estimate(values: np.ndarray, weights: np.ndarray, confidence: float) -> dict[str, float | None]:
    """Mean over test images with the bootstrap percentile interval from the shared resamples."""
    samples = (weights @ values) / weights.sum(1)
    return estimate(float(np.mean(values)), samples, confidence)


def set_quality(images: np.ndarray, references: np.ndarray, weights: np.ndarray, confidence: float,
                lpips_net: torch.nn.Module | None, lpips_skip_reason: str) -> dict[str, object]:
    """PSNR / SSIM (/ LPIPS) of N x H x W `images` against the paired HR `references`."""
    if images.shape != references.shape:
        raise ValueError(f"quality: shapes differ {images.shape} vs {references.shape}")
    psnrs = np.array([psnr(x, y) for x, y in zip(images, references)])
    ssims = np.array([ssim(x, y) for x, y in zip(images, references)])
    out: dict[str, object] = {
        "psnr": weighted_mean_estimate(psnrs, weights, confidence),
        "ssim": weighted_mean_estimate(ssims, weights, confidence),
    }
    if lpips_net is None:
        out["lpips"] = {"skipped": lpips_skip_reason}
    else:
        out["lpips"] = weighted_mean_estimate(lpips_per_image(lpips_net, images, references), weights, confidence)
    return out
