"""Shared training machinery: the paired random-crop data, distributed (DDP) setup, loss logs.

One code path runs in a single process and under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the
environment). Every rank draws the same *global* batch (crops, flips, timesteps, noise, class
dropout) from one seeded generator and keeps its own slice, so the global batch size and the
trajectory do not depend on the number of processes; gradients are averaged by DDP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from medsr.core import io
from medsr.core.parameters import CLASSES
from medsr.data.pixels import bicubic_upsample
from medsr.core.errors import MedsrError


# --- paired data ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PairedImages:
    """HR, LR and bicubic(LR) images of one split, paired by id, as [N, 1, H, W] tensors in [0, 1]."""

    ids: list[str]
    hr: torch.Tensor
    lr: torch.Tensor
    bicubic: torch.Tensor
    labels: torch.Tensor  # 0 healthy, 1 unhealthy
    scale: int

    @property
    def hr_size(self) -> tuple[int, int]:
        return tuple(self.hr.shape[-2:])

    @property
    def lr_size(self) -> tuple[int, int]:
        return tuple(self.lr.shape[-2:])

    def content_sha256(self) -> str:
        """A digest of the training data itself: ids, labels, scale and the exact float32 bytes of every HR and LR
        image, in id order. Any changed pixel (e.g. LR images degraded anew with another noise_std) changes it,
        so a checkpoint keyed on it is never resumed on other data."""
        digest = hashlib.sha256()
        digest.update(f"medsr-paired-images-v1 scale={self.scale} n={len(self.ids)}\n".encode())
        for i in sorted(range(len(self.ids)), key=self.ids.__getitem__):
            hr, lr = (x[i].detach().to("cpu", torch.float32).contiguous() for x in (self.hr, self.lr))
            digest.update(f"{self.ids[i]}\t{int(self.labels[i])}\t{tuple(hr.shape)}\t{tuple(lr.shape)}\n".encode())
            digest.update(hr.numpy().tobytes())
            digest.update(lr.numpy().tobytes())
        return digest.hexdigest()

    def geometry(self) -> dict[str, object]:
        """What a model file records of its training images (read back by `model_file.LoadedUNet`)."""
        return {"scale": self.scale, "hr_size": list(self.hr_size), "lr_size": list(self.lr_size)}


def infer_scale(hr_size: tuple[int, int], lr_size: tuple[int, int], where: str) -> int:
    scale = hr_size[0] // lr_size[0]
    if hr_size[0] != scale * lr_size[0] or hr_size[1] != scale * lr_size[1] or scale < 1:
        raise MedsrError(f"{where}: LR size {lr_size} is not the HR size {hr_size} divided by an integer scale")
    return scale


def label_index(label: str, where: str) -> int:
    if label not in CLASSES:
        raise MedsrError(f"{where}: label {label!r} is not one of {', '.join(CLASSES)}")
    return CLASSES.index(label)


def load_pairs(hr_root: str | Path, lr_root: str | Path, split: str = "train") -> PairedImages:
    """Read the `split` images of the HR and LR sets, paired by id (sorted by id)."""
    hr_records = {r.id: r for r in io.read_manifest(hr_root, split)}
    lr_records = {r.id: r for r in io.read_manifest(lr_root, split)}
    missing = sorted(set(hr_records) - set(lr_records))
    if missing:
        raise MedsrError(f"{Path(lr_root) / io.MANIFEST}: no LR image for {split} id {missing[0]} "
                         f"({len(missing)} missing): re-run degrade")
    ids = sorted(hr_records)
    hr = torch.from_numpy(io.load_images(hr_root, [hr_records[i] for i in ids]))[:, None]
    lr = torch.from_numpy(io.load_images(lr_root, [lr_records[i] for i in ids]))[:, None]
    scale = infer_scale(tuple(hr.shape[-2:]), tuple(lr.shape[-2:]), str(lr_root))
    labels = torch.tensor([label_index(hr_records[i].label, str(Path(hr_root) / io.MANIFEST)) for i in ids])
    return PairedImages(ids, hr, lr, bicubic_upsample(lr, scale), labels, scale)


def check_crop(crop: int, data: PairedImages, size_multiple: int, key: str) -> None:
    if crop % data.scale or crop % size_multiple:
        raise MedsrError(f"{key}: {crop} must be a multiple of the scale {data.scale} and of {size_multiple} "
                         f"(the U-Net halves it {size_multiple.bit_length() - 1} times)")
    if crop > min(data.hr_size):
        raise MedsrError(f"{key}: {crop} exceeds the HR image size {data.hr_size}")


def random_crops(data: PairedImages, batch_size: int, crop: int, hflip: bool,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aligned random crops: (hr, bicubic, labels); the LR crop is crop / scale at the same place."""
    index = torch.randint(len(data.ids), (batch_size,), generator=generator)
    lr_crop = crop // data.scale
    h, w = data.lr_size
    top = torch.randint(h - lr_crop + 1, (batch_size,), generator=generator) * data.scale
    left = torch.randint(w - lr_crop + 1, (batch_size,), generator=generator) * data.scale
    flip = torch.rand(batch_size, generator=generator) < 0.5
    hr, bicubic = [], []
    for i, y, x, f in zip(index.tolist(), top.tolist(), left.tolist(), flip.tolist()):
        pair = torch.stack([data.hr[i, :, y:y + crop, x:x + crop], data.bicubic[i, :, y:y + crop, x:x + crop]])
        if hflip and f:
            pair = pair.flip(-1)
        hr.append(pair[0])
        bicubic.append(pair[1])
    return torch.stack(hr), torch.stack(bicubic), data.labels[index]


# --- distributed -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch."""
        per_rank = len(tensor) // self.world_size
        return tensor[self.rank * per_rank:(self.rank + 1) * per_rank]

    def mean(self, value: float) -> float:
        """Mean of a scalar over ranks (for logging)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size


def init_distributed(device: torch.device | None) -> Distributed:
    """Single process, or DDP when launched by torchrun (env RANK, WORLD_SIZE, LOCAL_RANK)."""
    device = device or torch.device("cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(0, 1, device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, device)


def per_rank_batch(batch_size: int, ctx: Distributed, key: str) -> int:
    if batch_size % ctx.world_size:
        raise MedsrError(f"{key}: {batch_size} is not divisible by the {ctx.world_size} processes "
                         f"(the global batch is split evenly across ranks)")
    return batch_size // ctx.world_size


def wrap(model: nn.Module, ctx: Distributed) -> nn.Module:
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def barrier(ctx: Distributed) -> None:
    if ctx.enabled:
        dist.barrier()


# --- divergence -------------------------------------------------------------------------------

class Diverged(MedsrError):
    """Training produced a non-finite loss or weights: no model is written (the message says what is kept)."""


def all_finite(*modules: nn.Module) -> bool:
    """Whether every parameter and floating-point buffer of `modules` is finite."""
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return False
    return True


def check_loss(loss: float, stage: str, where: str, key: str, learning_rate: float) -> None:
    """Stop a stage without a checkpoints folder on a non-finite loss (call it before the optimizer step)."""
    if not math.isfinite(loss):
        raise Diverged(f"{stage}: loss is {loss} at {where} ({key} {learning_rate:g}): training diverged; "
                       f"no model written")


# --- logs and small helpers ------------------------------------------------------------------

LOG_FIELDS = ("step", "loss", "learning_rate")


def write_log(path: str | Path, rows: list[dict]) -> None:
    """The loss CSV (DVC plots it); rewritten atomically at each log interval."""
    io.write_csv(path, rows, LOG_FIELDS)


def set_threads() -> None:
    """Respect OMP_NUM_THREADS when set (DDP on CPU: one thread per process avoids oversubscription)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
