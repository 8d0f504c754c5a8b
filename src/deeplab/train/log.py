"""The run log of a training run: log.csv, TensorBoard scalars when installed, a plot hook."""

from __future__ import annotations

import csv
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_FIELDS = ("iteration", "loss", "lr", "val_miou", "seconds")


class RunLog:
    """log.csv (rows after `start` from an interrupted run are dropped), TensorBoard, a plot hook."""

    def __init__(
        self, output: Path, start: int, enabled: bool, tensorboard: bool, plot: Callable[[Path], Any] | None = None
    ) -> None:
        self.path, self.enabled, self.t0 = output / "log.csv", enabled, time.perf_counter()
        self.plot_hook = plot
        self.writer = None
        if not enabled:
            return
        rows = []
        if self.path.exists() and start > 0:
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
            if rows and rows[-1].get("seconds"):
                self.t0 -= float(rows[-1]["seconds"])  # a resumed run's clock goes on from where it stopped
        self.file = open(self.path, "w", newline="")
        self.csv = csv.DictWriter(self.file, LOG_FIELDS)
        self.csv.writeheader()
        self.csv.writerows(rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "train.tensorboard is on but the tensorboard package is not installed: "
                    "writing log.csv only (pip install tensorboard, or train.tensorboard=false)",
                    stacklevel=2,
                )
            else:
                self.writer = SummaryWriter(str(output / "tensorboard"))

    def write(self, iteration: int, row: dict[str, float]) -> None:
        """Append a row (and TensorBoard scalars)."""
        if not self.enabled:
            return
        self.csv.writerow({"iteration": iteration, **row, "seconds": round(time.perf_counter() - self.t0, 3)})
        self.file.flush()
        if self.writer:
            for key, value in row.items():
                self.writer.add_scalar(key, value, iteration)

    def validation(self, iteration: int, class_iou: dict[str, float], panels: list) -> None:
        """TensorBoard: each class's validation IoU as a scalar, and photo | truth | prediction panels."""
        if not (self.enabled and self.writer):
            return
        for name, iou in class_iou.items():
            if iou == iou:  # NaN: the class is in neither the truth nor the predictions
                self.writer.add_scalar(f"val_iou/{name}", iou, iteration)
        for k, panel in enumerate(panels):
            self.writer.add_image(f"val/{k}", panel, iteration, dataformats="HWC")

    def plot(self) -> None:
        """Call the plot hook (the application draws loss and mIoU curves) with the log's path."""
        if self.enabled and self.plot_hook is not None:
            self.plot_hook(self.path)

    def close(self) -> None:
        """Close the files."""
        if self.enabled:
            self.file.close()
            if self.writer:
                self.writer.close()
