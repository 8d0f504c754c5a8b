"""The training engine: ``Trainer`` (SGD + poly LR, BN modes, mixed precision, DDP, atomic
checkpoints, exact resume) and what it is made of.

- ``config``: the recipe (documented dataclasses, YAML, key=value overrides).
- ``trainer``: ``Trainer``, ``run_training``; ``loss``: the loss; ``log``: log.csv / TensorBoard.
- ``optim``: SGD groups and the poly schedule; ``sampling``: the resumable data order.
- ``timing``: seconds per iteration of a recipe (torchrun process groups: ``deeplab.distributed``).
"""

from deeplab.train.config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from deeplab.train.trainer import NonFiniteLossError, Trainer, TrainResult, run_training

__all__ = [
    "Config",
    "ConfigError",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "run_training",
]
