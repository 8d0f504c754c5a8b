"""Time training iterations of a recipe on synthetic data of its crop size and batch."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from deeplab.distributed import DistInfo
from deeplab.train.config import Config
from deeplab.train.trainer import Trainer, build_model_for

# class counts of the data sets, so a recipe can be timed without its data on disk
NUM_CLASSES = {"voc": 21, "voc_aug": 21, "cityscapes": 19, "ade20k": 150, "shapes": 7}


class SyntheticSet:
    """Random images (side `size`) and masks, as a data set without a transform yields them."""

    def __init__(self, size: int, num_classes: int, length: int) -> None:
        self.size, self.length = size, length
        self.classes = [f"class{i}" for i in range(num_classes)]
        self.palette = [(i % 256, (7 * i) % 256, (13 * i) % 256) for i in range(num_classes)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        rng = np.random.default_rng(index)
        image = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        mask = rng.integers(0, len(self.classes), (self.size, self.size), dtype=np.uint8)
        return image, mask


def time_iterations(config: Config, iterations: int = 3, dist: DistInfo | None = None) -> dict[str, Any]:
    """Seconds per training iteration (data loading included; the first, warm-up, one excluded).

    Runs on random images and masks of the recipe's crop size and batch, with random weights.
    """
    if iterations < 1:
        raise ValueError(f"benchmark iterations must be >= 1, got {iterations}")
    cfg = copy.deepcopy(config)
    cfg.data.val_split, cfg.data.scan_masks, cfg.data.num_workers = None, False, 0
    cfg.train.backbone_weights = cfg.train.init_weights = None
    cfg.train.iterations = iterations + 1
    num_classes = NUM_CLASSES.get(cfg.data.dataset, 21)
    data = SyntheticSet(cfg.data.crop_size, num_classes, cfg.train.batch_size * (iterations + 1))
    with tempfile.TemporaryDirectory() as tmp:
        cfg.output = tmp
        # lr 0: the same work per iteration, but a randomly initialised network with frozen batch
        # norm (v2, v3 stage 2) cannot diverge to NaN over the timed iterations
        model = build_model_for(cfg, num_classes)
        trainer = Trainer(cfg, model, data, dist=dist, progress=False, lr=0.0)
        trainer.train_mode()
        batches, times = iter(trainer.loader()), []
        for _ in range(iterations + 1):
            start = time.perf_counter()
            trainer.step([next(batches) for _ in range(cfg.train.accumulate)])
            times.append(time.perf_counter() - start)
    return {
        "seconds_per_iteration": statistics.median(times[1:]),
        "warmup_seconds": times[0],
        "batch_size": cfg.train.batch_size,
        "crop_size": cfg.data.crop_size,
        "arch": cfg.model.arch,
        "iterations": iterations,
    }
