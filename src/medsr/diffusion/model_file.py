"""Rebuild a trained U-Net (diffusion SR or regression baseline) from its safetensors file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medsr.checkpoint import load_model_file
from medsr.config import section_from_dict
from medsr.parameters import DiffusionParams, UNetParams
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.schedule import DiffusionSchedule, process_schedule
from medsr.diffusion.unet import UNet
from medsr.errors import MedsrError
from medsr.pixels import bicubic_upsample
from medsr.io import Record, image_path, load_images, sha256_file

# kind -> which conditionings the network was built with (time, class, LR)
STUDENT_KEY = "student"  # the metadata key that marks a distilled one-step student (medsr.train_student)
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
