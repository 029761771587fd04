"""Exponential moving average of model weights (Polyak averaging), evaluated and exported instead
of the raw weights when enabled; see e.g. Izmailov et al. 2018 and timm's ``ModelEmaV2``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """A frozen copy of a model whose floating-point tensors follow ``ema = d * ema + (1 - d) * w``.

    Args:
        model: the (unwrapped) model being trained.
        decay: the decay ``d``; larger averages over more steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights (buffers are copied)."""
        parameters = dict(model.named_parameters())
        for name, average in self.module.named_parameters():  # tied weights appear once
            average.lerp_(parameters[name].detach().to(average.dtype), 1.0 - self.decay)
        buffers = dict(model.named_buffers())
        for name, average in self.module.named_buffers():
            average.copy_(buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().cpu().clone() for name, tensor in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
