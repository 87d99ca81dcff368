"""The classifier families, trained from scratch: torchvision networks (weights=None) with a 1-channel stem
and a 2-class head. ResNet18 (He et al. 2016) is the thesis's; the others (EfficientNet-B0, Tan & Le 2019;
DenseNet-121, Huang et al. 2017; MobileNetV3-Small, Howard et al. 2019; ShuffleNetV2 x1.0, Ma et al. 2018)
show whether a verdict is specific to ResNet18 (train_classifier.architectures).

Every image set (HR, bicubic, regression, SR) goes through the same `normalize`: images in [0, 1]
are mapped to roughly zero mean with one fixed affine map; nothing is fitted per set or per image.

Networks and their inputs are channels_last (NHWC): oneDNN's convolutions, BatchNorm and pooling run faster in it
on the CPU (ResNet18, 64 x 64, one thread: benchmarks/classifier_speed.py, results/benchmarks/classifier_speed.json).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.models
from torch import nn

from medsr.core.model_files import load_model_file
from medsr.core.parameters import ARCHITECTURES, CLASSES
from medsr.core.errors import MedsrError

NORMALIZE_MEAN = 0.5  # one fixed map [0, 1] -> [-1, 1] for every image set
NORMALIZE_STD = 0.5
BATCHNORM_MOMENTUM = 0.1  # PyTorch's default and ResNet18's; see build_classifier
MEMORY_FORMAT = torch.channels_last  # of every classifier's weights and inputs (see the module docstring)
LEGACY_ARCHITECTURE = "resnet18-1ch"  # the `architecture` of model files written before there were several


def one_channel_stem(model: nn.Module) -> nn.Module:
    """The network's first convolution (the one reading the 3 RGB channels) replaced by a 1-channel one.

    Same kernel, stride, padding and width; He (Kaiming) normal init, fan_out, as torchvision's own stems.
    """
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                stem = nn.Conv2d(1, child.out_channels, kernel_size=child.kernel_size, stride=child.stride,
                                 padding=child.padding, bias=child.bias is not None)
                nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
                if stem.bias is not None:
                    nn.init.zeros_(stem.bias)
                setattr(parent, name, stem)
                return model
    raise AssertionError(f"{type(model).__name__}: no 3-channel first convolution")


def build_classifier(architecture: str = "resnet18", num_classes: int = len(CLASSES)) -> nn.Module:
    """torchvision `architecture` (weights=None, num_classes outputs) with its stem made 1-channel.

    resnet18: conv1 -> Conv2d(1, 64, 7, 2, 3); efficientnet_b0: features[0][0] -> Conv2d(1, 32, 3, 2, 1);
    densenet121: features.conv0 -> Conv2d(1, 64, 7, 2, 3); mobilenet_v3_small: features[0][0] -> Conv2d(1, 16, 3,
    2, 1); shufflenet_v2_x1_0: conv1[0] -> Conv2d(1, 24, 3, 2, 1).

    Every BatchNorm gets momentum BATCHNORM_MOMENTUM: torchvision's MobileNetV3 uses 0.01 (EfficientNet-B0 keeps
    0.1), made for ImageNet's many steps; after the few hundred steps of a default run its running statistics are still
    near their initial values and the network in eval mode scores every val image at chance.
    """
    if architecture not in ARCHITECTURES:
        raise MedsrError(f"train_classifier.architectures: unknown architecture {architecture!r} "
                         f"(one of {', '.join(ARCHITECTURES)})")
    model = one_channel_stem(getattr(torchvision.models, architecture)(weights=None, num_classes=num_classes))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BATCHNORM_MOMENTUM
    return model.to(memory_format=MEMORY_FORMAT)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """The network's input: the fixed affine map of [0, 1] images, in MEMORY_FORMAT."""
    return ((images - NORMALIZE_MEAN) / NORMALIZE_STD).contiguous(memory_format=MEMORY_FORMAT)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The classifier in eval mode, from a safetensors file written by `medsr train-classifier`.

    The network is built from the file's `architecture`; `model.architecture` says which it is.
    """
    state_dict, metadata = load_model_file(path, device="cpu")
    architecture = metadata.get("architecture")
    architecture = "resnet18" if architecture == LEGACY_ARCHITECTURE else architecture
    if architecture not in ARCHITECTURES:
        raise MedsrError(f"{path}: not a medsr classifier (architecture {metadata.get('architecture')!r}, "
                         f"expected one of {', '.join(ARCHITECTURES)})")
    model = build_classifier(architecture, int(metadata.get("num_classes", len(CLASSES))))
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise MedsrError(f"{path}: weights do not fit the {architecture} classifier "
                         f"({str(err).splitlines()[0]})") from err
    model.image_size = metadata.get("image_size")  # type: ignore[assignment]  # for callers' size checks
    model.architecture = architecture  # type: ignore[assignment]
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
