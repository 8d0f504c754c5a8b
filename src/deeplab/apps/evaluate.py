"""``deeplab evaluate``: load a checkpoint, evaluate it on a data set, write JSON and plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from deeplab.apps.plots import plot_evaluation
from deeplab.atomic import atomic_write
from deeplab.crf import DenseCRF
from deeplab.data import build_dataset
from deeplab.evaluation import TRIMAP_WIDTHS, evaluate, no_nan
from deeplab.inference import Segmenter
from deeplab.models import load_model


def write_result(result: dict, path: str | Path) -> Path:
    """Write a result as JSON (NaN written as null)."""
    text = json.dumps(no_nan(result), indent=1) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_result(path: str | Path) -> dict:
    """Read a result JSON written by `write_result`, with a one-line error for a bad file."""
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such result file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON result file ({e.msg})") from None
    if not isinstance(result, dict) or "miou" not in result:
        raise ValueError(f"{path}: not an evaluation result (no 'miou')")
    result.setdefault("label", Path(path).stem)
    return result


def format_result(result: dict) -> str:
    """A plain-text table: per-class IoU, then the summary scores."""
    width = max(len(c) for c in result["classes"])
    lines = [f"{'class':<{width}}  IoU (%)"]
    for name, iou in result["per_class_iou"].items():
        lines.append(f"{name:<{width}}  {'n/a' if iou is None else f'{100 * iou:6.2f}'}")
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou"):
        value = result[key]
        lines.append(f"{key:<{width}}  {'n/a' if value is None else f'{100 * value:6.2f}'}")
    return "\n".join(lines)


def run_evaluation(
    weights: str | Path,
    dataset: str,
    root: str | Path | None,
    split: str = "val",
    *,
    scales: Sequence[float] = (1.0,),
    fusion: str = "mean",
    flip: bool = False,
    crf: bool = False,
    precision: str = "fp32",
    device: str | None = None,
    max_images: int | None = None,
    trimap: bool = True,
    label: str | None = None,
    progress: bool = True,
) -> dict:
    """Load a checkpoint, build its Segmenter and evaluate it on a data set split."""

    model = load_model(weights)
    refine = None
    if crf:
        refine = DenseCRF()
    seg = Segmenter(model, scales=scales, flip=flip, fusion=fusion, crf=refine, precision=precision, device=device)
    data = build_dataset(dataset, root, split)
    if len(data.classes) != len(model.meta.classes):
        raise ValueError(
            f"{weights}: the model has {len(model.meta.classes)} classes, {dataset} has {len(data.classes)}"
        )
    result = evaluate(
        seg,
        data,
        trimap_widths=TRIMAP_WIDTHS if trimap else None,
        max_images=max_images,
        progress=progress,
        label=label,
    )
    result["settings"].update(weights=str(weights), dataset=dataset, split=split, precision=precision)
    return result


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """result.json and the plots (per-class IoU, confusion matrix, trimap) in out_dir."""

    return [write_result(result, Path(out_dir) / "result.json"), *plot_evaluation(result, out_dir)]
