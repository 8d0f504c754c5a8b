"""Evaluation over a data set: confusion matrix scores, per-class IoU and the trimap measure.

The loop that training validation and ``deeplab evaluate`` share; files and plots are the
applications' (``deeplab.apps.evaluate``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from deeplab.data import DatasetError
from deeplab.data.loading import batches
from deeplab.distributed import DistInfo, all_reduce_sum
from deeplab.inference import Segmenter
from deeplab.metrics import ConfusionMatrix, TrimapMetric, scores

TRIMAP_WIDTHS = range(1, 41)


def as_segmenter(predictor: Any) -> Any:
    """A Segmenter as is; a model wrapped in a single-scale Segmenter."""
    if isinstance(predictor, nn.Module):
        return Segmenter(predictor)
    return predictor


def accumulate(
    predictor: Any,
    dataset: Any,
    indices: Iterable[int] | None = None,
    trimap_widths: Iterable[int] | None = TRIMAP_WIDTHS,
    progress: bool = False,
    batch_size: int = 1,
    workers: int = 0,
) -> tuple[ConfusionMatrix, TrimapMetric | None]:
    """Run the predictor over dataset[i] = (image HxWx3 uint8, mask HxW) and count the outcomes;
    samples are decoded ahead by ``workers`` loader processes (threads where forking is unsafe, ``deeplab.forks``)
    and segmented ``batch_size`` at a time, the CRF of one batch overlapping the network of the
    next off the CPU (``Segmenter.predict_batches``)."""
    seg = as_segmenter(predictor)
    num_classes = len(dataset.classes)
    ignore = getattr(dataset, "ignore_index", 255)
    cm = ConfusionMatrix(num_classes, ignore)
    trimap = TrimapMetric(num_classes, trimap_widths, ignore) if trimap_widths is not None else None
    indices = list(range(len(dataset)) if indices is None else indices)
    loader = batches(Subset(dataset, indices), batch_size, workers)
    bar = tqdm(total=len(indices), desc="evaluate", unit="img", disable=not progress, dynamic_ncols=True)
    masks: deque = deque()

    def images():  # the masks wait in order for their predictions
        for batch in loader:
            masks.append([mask for _, mask in batch])
            yield [image for image, _ in batch]

    if hasattr(seg, "predict_batches"):
        results = seg.predict_batches(images(), probs=False)  # the labels are all that is counted
    else:
        results = ([seg(image) for image in batch] for batch in images())
    done = 0
    try:
        for predictions in results:
            _count(predictions, masks.popleft(), cm, trimap)
            done += len(predictions)
            bar.update(len(predictions))
    except DatasetError:
        raise  # a file that cannot be read names itself
    except ValueError as err:  # the network's failure: name the image (its name where the data set has one)
        names = getattr(dataset, "names", None)
        image = indices[min(done, len(indices) - 1)]
        raise ValueError(f"{names[image] if names else f'image {image}'} of the data set: {err}") from None
    finally:
        bar.close()  # an error is then printed on a line of its own
    return cm, trimap


def _count(predictions: list, masks: list, cm: ConfusionMatrix, trimap: TrimapMetric | None) -> None:
    """Add a batch's predictions against their masks to the confusion matrix and the trimap counts."""
    for mask, prediction in zip(masks, predictions):
        cm.update(prediction.labels, mask)
        if trimap is not None:
            trimap.update(prediction.labels, mask)


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
    return no_nan(result)


def evaluate(
    predictor: Any,
    dataset: Any,
    *,
    trimap_widths: Iterable[int] | None = TRIMAP_WIDTHS,
    max_images: int | None = None,
    progress: bool = True,
    label: str | None = None,
    dist: DistInfo | None = None,
    batch_size: int = 1,
    workers: int = 0,
) -> dict:
    """Evaluate a Segmenter (or a model, run at one scale) on a data set of (image, mask) pairs.

    Args:
        predictor: a ``Segmenter`` (its scales, flip, CRF are used) or a model.
        dataset: a data set of (HxWx3 uint8 image, HxW mask) pairs with ``classes`` (``build_dataset``).
        trimap_widths: band widths in pixels for the trimap measure (v2 Fig. 5); None skips it.
        max_images: the first N images only.
        progress: draw a progress bar.
        label: the run's name in plots (default: from the settings).
        dist: under torchrun each process takes every world_size-th image and the counts are summed:
            every rank returns the single-process result.
        batch_size, workers: images per forward pass, and loader workers reading ahead.

    Returns classes, miou, pixel_accuracy, mean_class_accuracy, fw_iou, per_class_iou and
    per_class_accuracy ({class: value}, None where a class is absent from both ground truth and
    prediction), confusion_matrix (rows = ground truth), trimap ({widths, miou, pixel_accuracy},
    or None with trimap_widths=None), num_images, label and the Segmenter's settings.
    """
    if len(dataset) == 0:
        raise ValueError("the evaluation data set is empty")
    seg = as_segmenter(predictor)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    dist = dist or DistInfo()
    shard = range(dist.rank, n, dist.world_size)
    cm, trimap = accumulate(seg, dataset, shard, trimap_widths, progress and dist.is_main, batch_size, workers)
    if dist.enabled:
        cm.matrix = all_reduce_counts(cm.matrix, dist)
        if trimap is not None:
            trimap.counts = all_reduce_counts(trimap.counts, dist)
    settings = {
        "scales": list(getattr(seg, "scales", (1.0,))),
        "flip": bool(getattr(seg, "flip", False)),
        "fusion": getattr(seg, "fusion", None),
        "crf": getattr(seg, "crf", None) is not None,
    }
    if label is None:
        label = f"scales {','.join(f'{s:g}' for s in getattr(seg, 'scales', (1.0,)))}"
        label += " + flip" * bool(settings["flip"]) + " + CRF" * bool(settings["crf"])
    return summarize(cm.matrix, dataset.classes, trimap, num_images=n, label=label, settings=settings)


def no_nan(value: Any) -> Any:
    """Replace float NaN by None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value


def all_reduce_counts(counts: np.ndarray, dist: DistInfo) -> np.ndarray:
    """Integer counts summed over the processes (exact: int64 on the CPU, or on the GPU under nccl)."""
    device = dist.device if dist.device.type == "cuda" else torch.device("cpu")
    total = all_reduce_sum(torch.from_numpy(np.ascontiguousarray(counts)).to(device), dist)
    return total.cpu().numpy()
