"""``deeplab data check``: what training on a data set would meet, before it starts.

Every image and mask is decoded and checked (readable, the same size, label values the classes
allow, colours the palette knows); every problem is listed, not only the first. Then the class
pixel frequencies (a table and a bar plot) and the median-frequency class weights they suggest
(``loss.class_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from deeplab.apps.plots import save_figure
from deeplab.data import build_dataset
from deeplab.train.loss import median_frequency_weights


@dataclass
class DataReport:
    """The outcome of a check: the samples, the files with problems, class statistics."""

    samples: int
    classes: list[str]
    problems: list[str] = field(default_factory=list)
    pixels: np.ndarray | None = None
    weights: list[float] | None = None


def check_dataset(name: str, root: str | None, split: str, progress: bool = True, **options: Any) -> DataReport:
    """Decode every sample of a data set split; collect its problems and class frequencies."""
    data = build_dataset(name, root, split, **options)  # pairing and layout errors end the check here
    classes = list(data.classes)
    pixels, image_pixels = np.zeros(len(classes), np.int64), np.zeros(len(classes), np.int64)
    report = DataReport(len(data), classes)
    for index in tqdm(range(len(data)), desc="check", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            _, mask = data.load(index) if hasattr(data, "load") else data[index]
        except ValueError as err:
            report.problems.append(str(err))
            continue
        counts = np.bincount(mask[mask < len(classes)].ravel(), minlength=len(classes))[: len(classes)]
        pixels += counts
        image_pixels[counts > 0] += int(counts.sum())
    report.pixels = pixels
    report.weights = median_frequency_weights(pixels, image_pixels)
    return report


def format_report(report: DataReport) -> str:
    """The class table (pixels, share, suggested weight) and the problems, as text."""
    assert report.pixels is not None and report.weights is not None
    total = max(int(report.pixels.sum()), 1)
    width = max(len(c) for c in report.classes)
    lines = [f"{'class':<{width}}  {'pixels':>12}  {'share':>7}  {'weight':>7}"]
    for name, count, weight in zip(report.classes, report.pixels, report.weights):
        lines.append(f"{name:<{width}}  {int(count):>12}  {100 * count / total:>6.2f}%  {weight:>7.3f}")
    absent = [c for c, n in zip(report.classes, report.pixels) if n == 0]
    if absent:
        lines.append(f"never labelled: {', '.join(absent)}")
    lines.append(f"suggested: loss.class_weights=[{', '.join(f'{w:.3g}' for w in report.weights)}] (or auto)")
    ok = report.samples - len(report.problems)
    lines.append(
        f"{ok} of {report.samples} samples ready"
        + (f"; {len(report.problems)} with problems:" if report.problems else "")
    )
    lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)


def plot_frequencies(report: DataReport, path: str | Path) -> Path:
    """Bars of each class's share of the labelled pixels (log scale: rare classes stay visible)."""
    assert report.pixels is not None
    share = 100 * report.pixels / max(int(report.pixels.sum()), 1)
    fig = Figure(figsize=(7, 1.5 + 0.28 * len(report.classes)))
    ax = fig.add_subplot()
    y = np.arange(len(report.classes))
    ax.barh(y, np.maximum(share, 1e-4), color="tab:blue")
    ax.set_xscale("log")
    ax.set_yticks(y, report.classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the labelled pixels (%, log scale)")
    ax.set_title(f"class frequencies over {report.samples} samples")
    return save_figure(fig, path)
