"""Every seeded random stream of medsr, derived in one way: sha256 of the parts that name it.

A stream named by (seed, image id) or (seed, rank, step) does not depend on the order or batch in which
images or steps are processed, so shards, batch sizes, resumes and process counts draw the same numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from the parts, e.g. derived_seed(seed, image_id) or derived_seed(seed, rank, step)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def torch_generator(*parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded by `derived_seed(*parts)` (e.g. the degradation noise of one image)."""
    return torch.Generator(device=device).manual_seed(derived_seed(*parts))


def numpy_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derived_seed(*parts))


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNGs (weight init, dropout) and return a CPU generator for data-order draws."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
