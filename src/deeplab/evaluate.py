"""Evaluation over a data set: confusion matrix scores, per-class IoU and the trimap measure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from torch import nn
from tqdm import tqdm

from deeplab.metrics import ConfusionMatrix, TrimapMetric, scores

TRIMAP_WIDTHS = range(1, 41)


def as_segmenter(predictor: Any) -> Any:
    """A Segmenter as is; a model wrapped in a single-scale Segmenter."""
    if isinstance(predictor, nn.Module):
        from deeplab.inference import Segmenter

        return Segmenter(predictor)
    return predictor


def accumulate(
    predictor: Any,
    dataset: Any,
    indices: Iterable[int] | None = None,
    trimap_widths: Iterable[int] | None = TRIMAP_WIDTHS,
    progress: bool = False,
) -> tuple[ConfusionMatrix, TrimapMetric | None]:
    """Run the predictor over dataset[i] = (image HxWx3 uint8, mask HxW) and count the outcomes."""
    seg = as_segmenter(predictor)
    num_classes = len(dataset.classes)
    ignore = getattr(dataset, "ignore_index", 255)
    cm = ConfusionMatrix(num_classes, ignore)
    trimap = TrimapMetric(num_classes, trimap_widths, ignore) if trimap_widths is not None else None
    indices = list(range(len(dataset)) if indices is None else indices)
    for i in tqdm(indices, desc="evaluate", unit="img", disable=not progress, dynamic_ncols=True):
        image, mask = dataset[i]
        labels = seg(image).labels
        cm.update(labels, mask)
        if trimap is not None:
            trimap.update(labels, mask)
    return cm, trimap


def summarize(matrix: np.ndarray, classes: Sequence[str], trimap: TrimapMetric | None = None, **info: Any) -> dict:
    """The result dict: scores of a confusion matrix by class name, the matrix, trimap, extra info."""
    s = scores(matrix)
    result = {
        "classes": list(classes),
        "miou": s["miou"],
        "pixel_accuracy": s["pixel_accuracy"],
        "mean_class_accuracy": s["mean_class_accuracy"],
        "fw_iou": s["fw_iou"],
        "per_class_iou": dict(zip(classes, s["per_class_iou"])),
        "per_class_accuracy": dict(zip(classes, s["per_class_accuracy"])),
        "confusion_matrix": np.asarray(matrix).tolist(),
        "trimap": trimap.compute() if trimap is not None else None,
    }
    result.update(info)
    return _no_nan(result)


def evaluate(
    predictor: Any,
    dataset: Any,
    *,
    trimap_widths: Iterable[int] | None = TRIMAP_WIDTHS,
    max_images: int | None = None,
    progress: bool = True,
    label: str | None = None,
) -> dict:
    """Evaluate a Segmenter (or a model, run at one scale) on a data set of (image, mask) pairs.

    Returns classes, miou, pixel_accuracy, mean_class_accuracy, fw_iou, per_class_iou and
    per_class_accuracy ({class: value}, None where a class is absent from both ground truth and
    prediction), confusion_matrix (rows = ground truth), trimap ({widths, miou, pixel_accuracy},
    or None with trimap_widths=None), num_images, label and the Segmenter's settings.
    """
    if len(dataset) == 0:
        raise ValueError("the evaluation data set is empty")
    seg = as_segmenter(predictor)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    cm, trimap = accumulate(seg, dataset, range(n), trimap_widths, progress)
    settings = {
        "scales": list(getattr(seg, "scales", (1.0,))),
        "flip": bool(getattr(seg, "flip", False)),
        "fusion": getattr(seg, "fusion", None),
        "crf": getattr(seg, "crf", None) is not None,
    }
    if label is None:
        label = f"scales {','.join(f'{s:g}' for s in settings['scales'])}"
        label += " + flip" * settings["flip"] + " + CRF" * settings["crf"]
    return summarize(cm.matrix, dataset.classes, trimap, num_images=n, label=label, settings=settings)


def write_result(result: dict, path: str | Path) -> Path:
    """Write a result as JSON (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_no_nan(result), indent=1) + "\n")
    return path


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


def _no_nan(value: Any) -> Any:
    """Replace float NaN by None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


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
    max_images: int | None = None,
    trimap: bool = True,
    label: str | None = None,
    progress: bool = True,
) -> dict:
    """Load a checkpoint, build its Segmenter and evaluate it on a data set split."""
    from deeplab import load_model
    from deeplab.data import build_dataset
    from deeplab.inference import Segmenter

    model = load_model(weights)
    refine = None
    if crf:
        from deeplab.crf import DenseCRF

        refine = DenseCRF()
    seg = Segmenter(model, scales=scales, flip=flip, fusion=fusion, crf=refine, precision=precision)
    data = build_dataset(dataset, root, split)
    if len(data.classes) != len(model.meta.classes):
        raise ValueError(
            f"{weights}: the model has {len(model.meta.classes)} classes, {dataset} has {len(data.classes)}"
        )
    result = evaluate(seg, data, trimap_widths=TRIMAP_WIDTHS if trimap else None, max_images=max_images,
                      progress=progress, label=label)  # fmt: skip
    result["settings"].update(weights=str(weights), dataset=dataset, split=split, precision=precision)
    return result


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """result.json and the plots (per-class IoU, confusion matrix, trimap) in out_dir."""
    from deeplab.plots import plot_evaluation

    return [write_result(result, Path(out_dir) / "result.json"), *plot_evaluation(result, out_dir)]
