"""ResNet18 with a 1-channel stem and a 2-class head (He et al. 2016), trained from scratch.

Every image set (HR, bicubic, regression, SR) goes through the same `normalize`: images in [0, 1]
are mapped to roughly zero mean with one fixed affine map; nothing is fitted per set or per image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from medsr.checkpoint import load_model_file
from medsr.config import CLASSES
from medsr.errors import MedsrError

ARCHITECTURE = "resnet18-1ch"
NORMALIZE_MEAN = 0.5  # one fixed map [0, 1] -> [-1, 1] for every image set
NORMALIZE_STD = 0.5


def build_classifier(num_classes: int = len(CLASSES)) -> nn.Module:
    """torchvision ResNet18 (weights=None): conv1 -> Conv2d(1, 64, 7, 2, 3), fc -> num_classes."""
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - NORMALIZE_MEAN) / NORMALIZE_STD


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The classifier in eval mode, from a safetensors file written by `medsr train-classifier`."""
    state_dict, metadata = load_model_file(path, device="cpu")
    if metadata.get("architecture") != ARCHITECTURE:
        raise MedsrError(f"{path}: not a medsr classifier (architecture {metadata.get('architecture')!r}, "
                         f"expected {ARCHITECTURE!r})")
    model = build_classifier(int(metadata.get("num_classes", len(CLASSES))))
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise MedsrError(f"{path}: weights do not fit the classifier ({str(err).splitlines()[0]})") from err
    model.image_size = metadata.get("image_size")  # type: ignore[assignment]  # for callers' size checks
    return model.to(device).eval()


def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities [N, 2] (column 1 = unhealthy) of images [N, 1, H, W] in [0, 1].

    Inference only: eval mode, no augmentation, no autocast; returned on the CPU as float32.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"predict_proba expects images [N, 1, H, W], got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device=device, dtype=torch.float32)
            out.append(torch.softmax(model(normalize(batch)).float(), dim=1).cpu())
    model.train(was_training)
    if not out:
        return torch.zeros((0, len(CLASSES)), dtype=torch.float32)
    return torch.cat(out)
