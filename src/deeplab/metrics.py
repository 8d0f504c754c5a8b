"""Segmentation metrics: a confusion matrix (mIoU, accuracies) and the trimap measure of DeepLab v2."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage


def _as_numpy(x: Any) -> np.ndarray:
    """Accept numpy arrays and torch tensors (any device) alike."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _valid_pairs(pred: Any, target: Any, num_classes: int, ignore_index: int):
    """Flattened (target, pred) int64 pairs with ignore pixels dropped; checks shapes and ranges."""
    pred, target = _as_numpy(pred), _as_numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    for name, a in (("target", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = np.unique(a[(a < 0) | (a >= num_classes)])[:8].tolist()
            raise ValueError(f"{name} has values {bad} outside 0..{num_classes - 1} (ignore={ignore_index})")
    return t, p


def scores(matrix: np.ndarray) -> dict[str, Any]:
    """IoU per class, mIoU, pixel accuracy, mean class accuracy and frequency-weighted IoU."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    gt, pr, total = m.sum(1), m.sum(0), m.sum()
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
        freq = gt / total if total > 0 else np.zeros_like(gt)
    present = ~np.isnan(iou)
    return {
        "per_class_iou": iou.tolist(),
        "per_class_accuracy": acc.tolist(),
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_class_accuracy": float(np.nanmean(acc)) if (gt > 0).any() else float("nan"),
        "fw_iou": float((freq[present] * iou[present]).sum()) if total > 0 else float("nan"),
    }


class ConfusionMatrix:
    """Accumulates a CxC confusion matrix (rows = ground truth, columns = prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    @classmethod
    def from_matrix(cls, matrix: Any, ignore_index: int = 255) -> ConfusionMatrix:
        """Wrap an existing (e.g. all-reduced) CxC count matrix."""
        m = _as_numpy(matrix).astype(np.int64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a confusion matrix must be square, got shape {m.shape}")
        cm = cls(m.shape[0], ignore_index)
        cm.matrix = m.copy()
        return cm

    def update(self, pred: Any, target: Any) -> None:
        """Add a prediction/ground-truth pair of label arrays of any (equal) shape."""
        t, p = _valid_pairs(pred, target, self.num_classes, self.ignore_index)
        c = self.num_classes
        self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (e.g. from another process); returns self."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError(f"cannot merge {other.matrix.shape} into {self.matrix.shape}")
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix[:] = 0

    def compute(self) -> dict[str, Any]:
        """Scores of the counts so far (see `scores`)."""
        return scores(self.matrix)


def boundary_distance(target: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest boundary pixel of the label map.

    A boundary pixel is one whose label (ignore included) differs from one of its 8 neighbours.
    Returns +inf everywhere when the map has no boundary.
    """
    t = np.asarray(target)
    edge = np.zeros(t.shape, dtype=bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = t[dy:, max(dx, 0) : t.shape[1] + min(dx, 0)]
        b = t[: t.shape[0] - dy, max(-dx, 0) : t.shape[1] - max(dx, 0)]
        diff = a != b
        edge[dy:, max(dx, 0) : t.shape[1] + min(dx, 0)] |= diff
        edge[: t.shape[0] - dy, max(-dx, 0) : t.shape[1] - max(dx, 0)] |= diff
    if not edge.any():
        return np.full(t.shape, np.inf)
    return ndimage.distance_transform_edt(~edge)


class TrimapMetric:
    """mIoU and pixel accuracy inside bands around ground-truth boundaries (DeepLab v2, Fig. 5).

    How the band is built, exactly:
    1. Boundary pixels: a pixel whose label differs from that of any of its 8 neighbours; the
       ignore label counts as a label here, so the edge of a void region is a boundary too, and
       both pixels of a differing pair are boundary pixels (an edge is 2 pixels thick).
    2. The band of width w: the pixels whose Euclidean distance to the nearest boundary pixel
       (``scipy.ndimage.distance_transform_edt``) is strictly less than w. Width 1 is the boundary
       pixels themselves; width w reaches w - 1 pixels further on each side.
    3. Ignore pixels are never scored, inside the band or out.

    The paper's band (v2 Sec. 4.1, following Kohli et al.) dilates the 255 "void" annotation that
    PASCAL VOC draws along object boundaries (about 5 px wide) by the band width. On VOC's masks the
    two agree up to where the band's centre sits: ours is centred on the label changes (including
    those between an object and the void band), so a width of w here covers the void band plus
    about w pixels on each side of it, as the paper's dilation by w does. On masks without a void
    border (Cityscapes, ADE20K, ``shapes``) the paper's construction would be empty, and ours still
    measures accuracy near the boundaries.
    """

    def __init__(self, num_classes: int, widths: Iterable[int] = range(1, 41), ignore_index: int = 255) -> None:
        self.widths = sorted(int(w) for w in widths)
        if not self.widths or self.widths[0] < 1:
            raise ValueError(f"trimap widths must be integers >= 1, got {list(widths)}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # counts[k - 1] = confusion counts of pixels whose smallest band is k (1..max width)
        self.counts = np.zeros((self.widths[-1], num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add one label map pair HxW, or a batch NxHxW."""
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
        if target.ndim == 3:
            for p, t in zip(pred, target):
                self.update(p, t)
            return
        if target.ndim != 2:
            raise ValueError(f"trimap needs HxW or NxHxW label maps, got shape {target.shape}")
        dist = boundary_distance(target)
        kmax = self.widths[-1]
        near = (dist < kmax) & (target != self.ignore_index)
        k = np.floor(dist[near]).astype(np.int64)  # in band w iff k < w
        t, p = _valid_pairs(pred[near], target[near], self.num_classes, self.ignore_index)
        c = self.num_classes
        idx = (k * c + t) * c + p
        self.counts += np.bincount(idx, minlength=kmax * c * c).reshape(kmax, c, c)

    def merge(self, other: TrimapMetric) -> TrimapMetric:
        """Add another metric's counts (same widths and classes); returns self."""
        if other.counts.shape != self.counts.shape:
            raise ValueError(f"cannot merge trimap counts {other.counts.shape} into {self.counts.shape}")
        self.counts += other.counts
        return self

    def compute(self) -> dict[str, list]:
        """{"widths": [...], "miou": [...], "pixel_accuracy": [...]}, one value per width."""
        cumulative = np.cumsum(self.counts, axis=0)
        results = [scores(cumulative[w - 1]) for w in self.widths]
        return {
            "widths": list(self.widths),
            "miou": [r["miou"] for r in results],
            "pixel_accuracy": [r["pixel_accuracy"] for r in results],
        }
