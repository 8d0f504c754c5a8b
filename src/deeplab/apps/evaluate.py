"""``deeplab evaluate``: load a checkpoint, evaluate it on a data set, write JSON and plots."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deeplab.apps.options import segmenter_from_options
from deeplab.apps.plots import plot_evaluation
from deeplab.atomic import atomic_write
from deeplab.data import build_dataset
from deeplab.distributed import DistInfo, check_same
from deeplab.evaluation import TRIMAP_WIDTHS, evaluate, no_nan
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
    segmenter: dict[str, Any] | None = None,
    max_images: int | None = None,
    trimap: bool = True,
    label: str | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    batch_size: int = 1,
    workers: int = 0,
) -> dict:
    """Load a checkpoint, build its Segmenter and evaluate it on a data set split.

    Args:
        weights: a checkpoint of any layout ``load_model`` reads.
        dataset, root, split: the data (``deeplab.data.build_dataset``).
        segmenter: ``segmenter_from_options``'s keywords (preset, scales, fusion, flip, crf,
            precision, device, backend, ...); single scale on the default device when None.
        max_images, trimap, label, progress, batch_size, workers: as ``evaluation.evaluate``.
        dist: under torchrun every process evaluates its share of the images on its own device
            and all return the same result; processes given different checkpoints or data fail.
    """
    dist = dist or DistInfo()
    model = load_model(weights)
    data = build_dataset(dataset, root, split)
    if len(data.classes) != len(model.meta.classes):
        raise ValueError(
            f"{weights}: the model has {len(model.meta.classes)} classes, {dataset} has {len(data.classes)}"
        )
    same_checkpoint(weights, dist)
    check_same((dataset, split, len(data), list(data.classes)), dist, "the data set (name, split, size, classes)")
    options = dict(segmenter or {})
    if dist.enabled:
        options["device"] = str(dist.device)
    seg = segmenter_from_options(model, **options)
    widths = TRIMAP_WIDTHS if trimap else None
    result = evaluate(
        seg,
        data,
        trimap_widths=widths,
        max_images=max_images,
        progress=progress,
        label=label,
        dist=dist,
        batch_size=batch_size,
        workers=workers,
    )
    result["settings"].update(weights=str(weights), dataset=dataset, split=split, precision=seg.precision)
    return result


def same_checkpoint(path: str | Path, dist: DistInfo) -> None:
    """ValueError unless every torchrun process was given the same checkpoint (size and SHA-1)."""
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    check_same((len(data), hashlib.sha1(data).hexdigest()), dist, "the checkpoint (size, SHA-1)")


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """result.json and the plots (per-class IoU, confusion matrix, trimap) in out_dir."""

    return [write_result(result, Path(out_dir) / "result.json"), *plot_evaluation(result, out_dir)]
