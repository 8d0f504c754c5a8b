"""PNG plots of training curves and evaluation results (matplotlib, no display needed).

Figures are made with `matplotlib.figure.Figure`, which renders with Agg and touches no global
pyplot state, so plotting works in headless runs and worker processes alike.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deeplab.atomic import atomic_write


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG, atomically (never a truncated plot under its name)."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def _read_log(log_csv: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Columns of the training log as (iteration, value) pairs, empty cells skipped."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(log_csv, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "iteration" and value not in ("", None):
                    series.setdefault(key, []).append((int(row["iteration"]), float(value)))
    return series


def plot_training_curves(log_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """loss.png (training loss and learning rate) and miou.png (validation mIoU) from log.csv."""
    series = _read_log(log_csv)
    written = []
    if series.get("loss"):
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        it, loss = zip(*series["loss"])
        ax.plot(it, loss, color="tab:blue", label="training loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        if series.get("lr"):
            ax2 = ax.twinx()
            ax2.plot(*zip(*series["lr"]), color="tab:gray", linestyle="--", label="learning rate")
            ax2.set_ylabel("learning rate")
        ax.set_title("Training loss")
        ax.grid(alpha=0.3)
        written.append(save_figure(fig, Path(out_dir) / "loss.png"))
    if series.get("val_miou"):
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        it, miou = zip(*series["val_miou"])
        ax.plot(it, [100 * m for m in miou], marker="o", color="tab:green")
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation mIoU (%)")
        ax.set_title(f"Validation mIoU (best {100 * max(miou):.1f}%)")
        ax.grid(alpha=0.3)
        written.append(save_figure(fig, Path(out_dir) / "miou.png"))
    return written


def plot_class_iou(result: dict, path: str | Path) -> Path:
    """Horizontal bars of the IoU of every class (a result of deeplab.evaluate.evaluate)."""
    names = list(result["per_class_iou"])
    values = [100 * (v if v is not None else math.nan) for v in result["per_class_iou"].values()]
    fig = Figure(figsize=(7, 1.5 + 0.28 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(values), color="tab:blue")
    for yi, v in zip(y, values):
        ax.text(
            0.5 if math.isnan(v) else v + 0.5,
            float(yi),
            "n/a" if math.isnan(v) else f"{v:.1f}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)")
    ax.axvline(100 * result["miou"], color="tab:red", linestyle="--", label=f"mIoU {100 * result['miou']:.1f}%")
    ax.legend(loc="lower right")
    ax.set_title("IoU per class")
    return save_figure(fig, path)


def plot_trimap(results: Sequence[dict], path: str | Path, labels: Sequence[str] | None = None) -> Path:
    """mIoU in bands around object boundaries against band width, one curve per result."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for i, result in enumerate(results):
        trimap = result.get("trimap")
        if not trimap:
            raise ValueError(f"result {i + 1} has no trimap measure (evaluated without it)")
        label = labels[i] if labels else result.get("label", f"run {i + 1}")
        miou = [math.nan if m is None else 100 * m for m in trimap["miou"]]
        ax.plot(trimap["widths"], miou, marker=".", label=label)
    ax.set_xlabel("trimap width (pixels)")
    ax.set_ylabel("mean IoU (%)")
    ax.set_title("Accuracy near object boundaries (trimap)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path) -> Path:
    """The confusion matrix, each ground-truth row normalised to sum to 1."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = 3 + 0.35 * len(classes)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
    ax.set_yticks(ticks, classes, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if len(classes) <= 25:
        for (r, c), v in np.ndenumerate(norm):
            if v >= 0.01:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Confusion matrix (rows normalised)")
    return save_figure(fig, path)


def plot_evaluation(result: dict, out_dir: str | Path) -> list[Path]:
    """class_iou.png, confusion_matrix.png and (when measured) trimap.png for one result."""
    out = Path(out_dir)
    written = [
        plot_class_iou(result, out / "class_iou.png"),
        plot_confusion_matrix(result["confusion_matrix"], result["classes"], out / "confusion_matrix.png"),
    ]
    if result.get("trimap"):
        written.append(plot_trimap([result], out / "trimap.png"))
    return written
