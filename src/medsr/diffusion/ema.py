"""Exponential moving average of model weights; the EMA weights are the ones saved and sampled."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """shadow <- decay_k * shadow + (1 - decay_k) * weights, decay_k = min(decay, (1 + k) / (10 + k)).

    The warm-up (k = number of updates so far) keeps the first steps' random weights from lingering
    in short runs (as diffusers' EMAModel and Tensorflow's ExponentialMovingAverage do).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for shadow, param in zip(self.shadow.parameters(), model.parameters()):
            shadow.lerp_(param.detach(), 1 - decay)
        for shadow, buffer in zip(self.shadow.buffers(), model.buffers()):
            shadow.copy_(buffer)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"shadow": self.shadow.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state["shadow"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
