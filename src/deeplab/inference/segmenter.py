"""Segmenter: multi-scale, flipped, tiled and CRF-refined inference, as DeepLab v2 and v3 do it.

What is fused: with ``fusion="max"`` the element-wise maximum of the logits over the scales
(DeepLab v2's MSC, which max-fuses score maps); with ``fusion="mean"`` the average of the softmax
probabilities over the scales (DeepLab v3). Flip: the flipped and unflipped outputs of one scale are
averaged in that same space (logits for max, probabilities for mean) before the scales are fused.
Each scale's logits are resized (bilinear) to the input size before the softmax and the fusion.

Tiles: ``tile=(h, w)`` is a window in image pixels; every window is run at every scale and flip
and fused on its own, and overlapping windows are blended with linear ramps over the overlap, so
the working memory beyond the CxHxW output does not grow with the image (see ``tiling``).

Presets: ``Segmenter.from_preset(model, "deeplabv2" | "deeplabv3", **overrides)`` (see PRESETS).
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from deeplab.constants import IMAGENET_MEAN, IMAGENET_STD
from deeplab.crf import DenseCRF
from deeplab.devices import autocast_dtype, check_precision, fast_bf16, resolve_device
from deeplab.imageio import as_rgb
from deeplab.inference.backends import build_chosen
from deeplab.inference.tiling import axis_plan, ramp, resample, window_starts

DEFAULT_TILE = (513, 513)
FUSIONS = ("mean", "max")  # DeepLab v3's mean of probabilities, v2's max of logits
# Network-input pixels per forward pass on the CPU: a batch beyond this spills the caches and runs
# slower per image (measured with the shipped model on a 2-core CPU: benchmarks/bench_evaluate.py),
# so larger batches are split; GPUs take the batch whole.
CPU_FORWARD_PIXELS = 1 << 18

NOT_FINITE = "the network's outputs are not finite (NaN or infinity): the weights are broken"

PRESETS: dict[str, dict[str, Any]] = {
    # DeepLab v2 (Chen et al. 2017), MSC: max over the score maps at scales 1, 0.75, 0.5.
    "deeplabv2": {"scales": (1.0, 0.75, 0.5), "flip": False, "fusion": "max"},
    # DeepLab v3 (Chen et al. 2017), eval: mean over scales 0.5..1.75 with left-right flips.
    "deeplabv3": {"scales": (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), "flip": True, "fusion": "mean"},
}


class Prediction(NamedTuple):
    """The result of a Segmenter: labels HxW int64 and probabilities CxHxW float32 (None where the
    call asked for labels only: ``probs=False``)."""

    labels: np.ndarray
    probs: np.ndarray | None


class Segmenter:
    """Turn images (paths, PIL images or arrays: ``imageio.as_rgb``) into label maps with a DeepLab model.

    Args:
        model: a DeepLab (``build_model`` / ``load_model``); its ``meta`` gives the normalisation.
        scales, fusion: the multi-scale strategy: "max" fuses logits (v2 MSC), "mean" averages
            softmax probabilities (v3); ``Segmenter.from_preset`` takes the papers' settings.
        flip: also run the left-right flipped image and average (v3).
        tile, overlap: a sliding window (h, w) in image pixels, automatic above ``max_pixels``
            network-input pixels, windows blended with linear ramps over the overlap.
        crf: a ``DenseCRF`` run on the fused probabilities.
        precision: "fp32", "bf16" (autocast; native on GPUs and CPUs with AVX512-BF16/AMX) or "fp16" (GPUs).
        backend: "torch" (batch norm folded, channels_last, optional ``compile``), "onnxruntime" or
            "openvino" (CPU), or "auto": OpenVINO for fp32 on the CPU where installed, else torch.
            OpenVINO's conversion of a model is cached on disk (``inference.cache``).
        optimize: False runs the model exactly as given with torch, in place (moved to the device).
        device: "cpu", "cuda", "cuda:N" or "mps" (default: the first GPU when there is one).
    """

    def __init__(
        self,
        model: nn.Module,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        fusion: str = "mean",
        tile: int | Sequence[int] | None = None,
        overlap: float = 1 / 3,
        crf: Any = None,
        precision: str = "fp32",
        *,
        backend: str = "auto",
        optimize: bool = True,
        compile: bool = False,
        max_pixels: int = 1 << 20,
        device: str | torch.device | None = None,
    ) -> None:
        self.scales = _check_scales(scales)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.device = resolve_device("cpu" if backend in ("onnxruntime", "openvino") and device is None else device)
        check_precision(precision, self.device)
        if backend in ("onnxruntime", "openvino") and self.device.type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU; use backend='torch' on a GPU")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
        self.flip, self.fusion, self.overlap, self.crf = flip, fusion, overlap, crf
        self.precision, self.max_pixels = precision, max_pixels
        self.meta = getattr(model, "meta", None)
        self.output_stride = int(getattr(model, "output_stride", 1))
        self.tile = None if tile is None else self._check_tile(tile)
        self.backend, self.model = build_chosen(model, backend, self.device, precision, optimize, compile)
        if self.backend == "torch":
            self.model = self.model.to(self.device)
        mean = getattr(self.meta, "mean", None) or IMAGENET_MEAN
        std = getattr(self.meta, "std", None) or IMAGENET_STD
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        if precision == "bf16" and self.device.type == "cpu" and not fast_bf16():
            warnings.warn("this CPU has no native bf16 (AVX512-BF16/AMX): bf16 will be slow", stacklevel=2)

    @classmethod
    def from_preset(cls, model: nn.Module, name: str, **overrides: Any) -> Segmenter:
        """A Segmenter with a paper's strategy: "deeplabv2" (max over 1, .75, .5) or "deeplabv3"."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(model, **{**PRESETS[name], **overrides})

    @torch.inference_mode()
    def __call__(self, image: np.ndarray | Image.Image, probs: bool = True) -> Prediction:
        """Segment one image: labels HxW int64 and probabilities CxHxW float32 (``probs=False``: None)."""
        return self.predict_batch([image], probs)[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray | Image.Image], probs: bool = True) -> list[Prediction]:
        """Segment several images, running those of one size through the network together.

        The same result as one at a time (up to float rounding of batched convolutions): images are
        grouped by size rather than padded, since padding would change what the image-level pooling
        of ASPP sees. Images that need tiles run one at a time. ``probs=False`` returns labels only:
        with one scale, no flip, no CRF and no tiles (``labels_only``) the argmax of the logits taken
        inside the runtime, without full-size probabilities; the same labels but where two logits
        differ by less than the softmax's rounding (there the probabilities tie: the first class).
        """
        rgbs = [as_rgb(image) for image in images]
        if not probs and self.labels_only(rgbs):
            return [Prediction(labels, None) for labels in self._labels(rgbs)]
        predictions = self.refine(rgbs, self.probabilities(rgbs))
        return predictions if probs else _labels_only(predictions)

    def predict_batches(
        self, batches: Iterable[Sequence[Any]], depth: int = 2, overlap: bool | None = None, probs: bool = True
    ) -> Iterator[list[Prediction]]:
        """``predict_batch`` over a stream of batches, in order. With ``overlap`` the CRF (and the
        argmax) of batch k runs on a background thread while the network computes batch k+1, at most
        ``depth`` batches waiting for it (bounded memory); by default ``overlaps_crf``. Results
        equal ``predict_batch``'s."""
        if overlap is None:
            overlap = self.overlaps_crf
        if self.crf is None or not overlap:
            for batch in batches:
                yield self.predict_batch(batch, probs)
            return
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crf") as pool:
            for batch in batches:
                rgbs = [as_rgb(image) for image in batch]
                pending.append(pool.submit(self.refine, rgbs, self.probabilities(rgbs)))
                while len(pending) >= depth:
                    done = pending.popleft().result()
                    yield done if probs else _labels_only(done)
            while pending:
                done = pending.popleft().result()
                yield done if probs else _labels_only(done)

    def labels_only(self, images: Sequence[np.ndarray]) -> bool:
        """Whether labels of these images can skip the probabilities: one scale, no flip, no CRF, no tiles."""
        plain = self.scales == (1.0,) and not self.flip and self.crf is None
        return plain and all(self._tile_for(rgb) is None for rgb in images)

    def _labels(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Labels of untiled images at one scale without flips: the argmax over the logits' classes,
        inside the runtime where it can (OpenVINO's graph), images of one size batched."""
        labels: list[np.ndarray | None] = [None] * len(rgbs)
        for members in _by_size(rgbs, range(len(rgbs))).values():
            step = self._images_per_pass(rgbs[members[0]].shape[:2], len(members))
            for start in range(0, len(members), step):
                part = members[start : start + step]
                x = torch.cat([self._normalise(rgbs[i]) for i in part])
                top, best = self._top(x)
                if not bool(torch.isfinite(top).all()):  # never labels from NaN
                    raise ValueError(NOT_FINITE)
                for k, i in enumerate(part):
                    labels[i] = best[k].numpy()
        return [label for label in labels if label is not None]

    def _top(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(highest logit, its class) N,H,W of a normalised batch, on the CPU."""
        labelled = getattr(self.model, "labels", None)  # a runtime that takes the argmax in its graph
        if labelled is not None:
            return labelled(x)
        top, best = self._run(x).max(1)
        return top.cpu(), best.cpu()

    @property
    def overlaps_crf(self) -> bool:
        """Whether the CRF is best run beside the network (on another thread): only when the network
        runs off the CPU. On the CPU both use every core, and overlapping them was slower (shapes
        val, scales + flip + CRF, 2 cores: 1.41-1.47 img/s overlapped, 1.52-1.57 in turn)."""
        return self.crf is not None and self.device.type != "cpu"

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray | Image.Image]) -> list[torch.Tensor]:
        """Fused probabilities CxHxW (CPU, float32) of each image: the network part of predict_batch."""
        rgbs = [as_rgb(image) for image in images]
        scores: list[torch.Tensor | None] = [None] * len(rgbs)
        whole = []
        for i, rgb in enumerate(rgbs):
            tile = self._tile_for(rgb)
            if tile is not None:
                scores[i] = self._tiled(rgb, tile)
            else:
                whole.append(i)
        for members in _by_size(rgbs, whole).values():
            fused = self._fuse([rgbs[i] for i in members]).float().cpu()
            for k, i in enumerate(members):
                scores[i] = fused[k]
        done = [s for s in scores if s is not None]  # every image went through a tile or a group
        probs = [s.contiguous() if self.fusion == "mean" else _softmax(s) for s in done]
        if not all(bool(torch.isfinite(p).all()) for p in probs):  # never labels from NaN
            raise ValueError(NOT_FINITE)
        return probs

    def refine(self, images: Sequence[np.ndarray | Image.Image], probs: list[torch.Tensor]) -> list[Prediction]:
        """The CRF (when set) and the argmax of ``probabilities(images)``: the CPU part of predict_batch,
        which can run on another thread while the network computes the next images."""
        rgbs = [as_rgb(image) for image in images]
        if isinstance(self.crf, DenseCRF):  # in place (no second copy of big maps), one image per thread
            arrays = [p.numpy() for p in probs]
            self.crf.batch(rgbs, arrays, out=arrays)
        elif self.crf is not None:
            refined = [self.crf(r, p.numpy()) for r, p in zip(rgbs, probs)]
            probs = [torch.from_numpy(np.asarray(q, dtype=np.float32)) for q in refined]
        return [Prediction(_argmax(p).numpy(), p.numpy()) for p in probs]

    def _tile_for(self, rgb: np.ndarray) -> tuple[int, int] | None:
        """The window size for this image: the chosen one, the default for large images, or None."""
        if self.tile is None and rgb.shape[0] * rgb.shape[1] * max(self.scales) ** 2 > self.max_pixels:
            return DEFAULT_TILE
        return self.tile

    def _check_tile(self, tile: int | Sequence[int]) -> tuple[int, int]:
        th, tw = (tile, tile) if isinstance(tile, int) else tuple(int(t) for t in tile)
        if min(th, tw) < self.output_stride:
            raise ValueError(f"tile {(th, tw)} is smaller than the model's output stride {self.output_stride}")
        return th, tw

    def _tiled(self, rgb: np.ndarray, tile: tuple[int, int]) -> torch.Tensor:
        """Sliding-window fusion: every window fused on its own, blended with linear ramps."""
        height, width = rgb.shape[:2]
        th, tw = min(tile[0], height), min(tile[1], width)
        oh, ow = round(th * self.overlap), round(tw * self.overlap)
        weights = ramp(th, oh)[:, None] * ramp(tw, ow)[None, :]
        acc: torch.Tensor | None = None
        weight = torch.zeros(height, width)
        for y in window_starts(height, th, self._stride(th, oh)):
            for x in window_starts(width, tw, self._stride(tw, ow)):
                scores = self._fuse([rgb], (y, y + th, x, x + tw))[0].float().cpu()
                if acc is None:
                    acc = torch.zeros(scores.shape[0], height, width)
                acc[:, y : y + th, x : x + tw].add_(scores * weights)
                weight[y : y + th, x : x + tw].add_(weights)
        assert acc is not None
        return acc.div_(weight)

    def _stride(self, size: int, overlap: int) -> int:
        """Window step, a multiple of the output stride where possible (keeps the grids aligned)."""
        step = max(size - overlap, 1)
        return step // self.output_stride * self.output_stride or step

    def _fuse(self, rgbs: list[np.ndarray], box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Fused scores (logits for max, probabilities for mean) N,C,H,W of images of one size, or
        of a window of one image: box = (top, bottom, left, right); None = the whole images."""
        fused: torch.Tensor | None = None
        for scale in self.scales:
            out = self._at_scale(rgbs, scale, box)
            if fused is None:
                fused = out
            elif self.fusion == "max":
                fused = torch.maximum(fused, out)
            else:
                fused.add_(out)
        assert fused is not None
        return fused if self.fusion == "max" else fused.div_(len(self.scales))

    def _at_scale(self, rgbs: list[np.ndarray], scale: float, box: tuple[int, ...] | None) -> torch.Tensor:
        """One scale's output N,C,H,W at input size: logits (max) or probabilities (mean), flip-averaged.

        A window is resampled exactly as the whole image would be (same bilinear grid), with
        its origin on the output-stride grid, so tiles agree with the untiled result inside.
        """
        height, width = rgbs[0].shape[:2]
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        if box is None or box == (0, height, 0, width):
            step = self._images_per_pass(scaled, len(rgbs))
            parts = [self._whole_at_scale(rgbs[i : i + step], scaled) for i in range(0, len(rgbs), step)]
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        (rgb,) = rgbs
        rows = axis_plan(box[0], box[1], height, scaled[0], self.output_stride)
        cols = axis_plan(box[2], box[3], width, scaled[1], self.output_stride)
        to_rows, to_cols, back_rows, back_cols = (m.to(self.device) for m in (rows[1], cols[1], rows[2], cols[2]))
        x = self._normalise(rgb[rows[0], cols[0]])
        x = resample(resample(x, to_rows, -2), to_cols, -1)
        out = self._run_flipped(x)
        return self._flip_mean(resample(resample(out, back_rows, -2), back_cols, -1))

    def _images_per_pass(self, scaled: tuple[int, int], count: int) -> int:
        """How many of ``count`` images of this network-input size go through one forward pass: on
        the CPU as many as CPU_FORWARD_PIXELS allows (flips included), at least one; elsewhere all."""
        if self.device.type != "cpu":
            return count
        return max(1, CPU_FORWARD_PIXELS // (scaled[0] * scaled[1] * (1 + self.flip)))

    def _whole_at_scale(self, rgbs: list[np.ndarray], scaled: tuple[int, int]) -> torch.Tensor:
        """``_at_scale`` of whole images of one size in one forward pass (flips included)."""
        height, width = rgbs[0].shape[:2]
        x = torch.cat([self._normalise(rgb) for rgb in rgbs])
        if scaled != (height, width):
            x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False)
        out = self._run_flipped(x)
        if scaled != (height, width):
            out = F.interpolate(out.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False)
            out = out.unflatten(0, (-1, len(rgbs)))
        return self._flip_mean(out)

    def _flip_mean(self, out: torch.Tensor) -> torch.Tensor:
        """F,N,C,H,W logits -> N,C,H,W: the mean over the flips, of probabilities for "mean" fusion.
        Without flips no copy: the network's channels_last output goes on as it is."""
        if self.fusion == "mean":
            out = out.softmax(2)
        return out[0] if len(out) == 1 else out[0].add(out[1]).div_(2)

    def _run_flipped(self, x: torch.Tensor) -> torch.Tensor:
        """Logits F,N,C,H,W of x (F = 1), or of x and its mirror image flipped back (F = 2)."""
        if not self.flip:
            return self._run(x)[None]
        out = self._run(torch.cat([x, x.flip(-1)]))
        return torch.stack([out[: len(x)], out[len(x) :].flip(-1)])

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = autocast_dtype(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.model(x)
        return out.float()

    def _normalise(self, rgb: np.ndarray) -> torch.Tensor:
        rgb = np.require(rgb, requirements=("C", "W"))  # a copy where read-only (PIL's): torch warns on those
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float().div_(255)
        return x.sub_(self._mean).div_(self._std).unsqueeze(0)


def _by_size(rgbs: Sequence[np.ndarray], indices: Iterable[int]) -> dict[tuple[int, ...], list[int]]:
    """The indices grouped by image size: images of one size go through the network together."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        groups.setdefault(rgbs[i].shape, []).append(i)
    return groups


def _labels_only(predictions: list[Prediction]) -> list[Prediction]:
    """The predictions without their probabilities (``probs=False``)."""
    return [Prediction(p.labels, None) for p in predictions]


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales}")
    return scales


def _argmax(probs: torch.Tensor) -> torch.Tensor:
    """probs.argmax(0) of C-contiguous C,H,W probabilities (the first class on ties), as a running
    maximum: several times faster than torch's argmax over the outer dimension on C,H,W."""
    best = probs[0].clone()
    labels = torch.zeros(probs.shape[1:], dtype=torch.int64)
    for c in range(1, len(probs)):
        labels.masked_fill_(probs[c] > best, c)
        torch.maximum(best, probs[c], out=best)
    return labels


def _softmax(logits: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """Softmax over classes of C,H,W logits -> C-contiguous probabilities, a band of rows at a time
    (bounded extra memory). Channels_last logits (the network's output) go through their contiguous
    H,W,C view, a new array; others are done in place."""
    hwc = logits.permute(1, 2, 0)
    if hwc.is_contiguous():
        probs = torch.empty(logits.shape)
        for top in range(0, logits.shape[1], rows):
            probs[:, top : top + rows] = hwc[top : top + rows].softmax(-1).permute(2, 0, 1)
        return probs
    logits = logits.contiguous()
    for top in range(0, logits.shape[1], rows):
        logits[:, top : top + rows] = logits[:, top : top + rows].softmax(0)
    return logits
