"""SGD with the poly learning-rate schedule, the head's learning-rate factor and batch-norm modes."""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models import unwrap

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def poly_lr(base_lr: float, iteration: int, iterations: int, power: float = 0.9) -> float:
    """The poly schedule of DeepLab: base_lr * (1 - iteration / iterations) ** power."""
    return base_lr * (1 - min(iteration, iterations) / iterations) ** power


class PolyLR(torch.optim.lr_scheduler.LRScheduler):
    """Poly learning rate per parameter group, computed in closed form from the iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, iterations: int, power: float = 0.9) -> None:
        self.iterations = iterations
        self.power = power
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        """Learning rates at iteration `self.last_epoch`."""
        return [poly_lr(float(b), self.last_epoch, self.iterations, self.power) for b in self.base_lrs]


def set_bn_mode(model: nn.Module, mode: str) -> None:
    """ "train": batch norm learns as usual; "frozen": eval mode (running statistics) and its
    scale/shift excluded from training. Call after `model.train()`, which resets the mode."""
    if mode not in ("train", "frozen"):
        raise ValueError(f"bn_mode must be 'train' or 'frozen', got {mode!r}")
    for m in model.modules():
        if isinstance(m, _NORMS) and mode == "frozen":
            m.eval()
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The classifier head(s) of a DeepLab (also inside DDP/MultiScale): `classifier`, `aux_classifier`."""
    model = unwrap(model)
    return [m for m in (getattr(model, "classifier", None), getattr(model, "aux_classifier", None)) if m is not None]


def build_sgd(
    model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4, head_lr_mult: float = 1.0
) -> torch.optim.SGD:
    """SGD over the trainable parameters; the head's group gets lr * head_lr_mult (10 in v2)."""
    head_ids = {id(p) for m in head_modules(model) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    body = [p for p in trainable if id(p) not in head_ids]
    head = [p for p in trainable if id(p) in head_ids]
    groups = [{"params": body, "lr": lr}]
    if head:
        groups.append({"params": head, "lr": lr * head_lr_mult})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
