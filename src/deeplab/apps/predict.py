"""``deeplab predict``: segment image files and write label PNGs, overlays and probabilities.

Every output is written atomically (temporary file + rename): an interrupted run never leaves a
truncated file under its final name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from deeplab.apps.viz import overlay_with_legend
from deeplab.atomic import atomic_write
from deeplab.data.loading import batches
from deeplab.imageio import read_image, write_label_png
from deeplab.inference import Prediction, Segmenter


class BatchResult(NamedTuple):
    """What predict_files did: the images written, the failures (path, message), the time."""

    done: list[Path]
    failed: list[tuple[Path, str]]
    seconds: float


def predict_files(
    segmenter: Segmenter,
    paths: Sequence[Path],
    outdir: str | Path,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    save_probs: bool = False,
    alpha: float = 0.5,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 1,
    workers: int = 0,
) -> BatchResult:
    """Segment each image; write NAME.png (palette labels), NAME_overlay.png, NAME_probs.npy.

    Images are decoded ahead by ``workers`` loader processes (threads where forking is unsafe, ``deeplab.forks``)
    and segmented ``batch_size`` at a time; the writing (and the CRF, where
    ``segmenter.overlaps_crf``) runs on a background thread while the network computes the next
    batch, at most two batches behind it. A failing image is reported and skipped; the others
    still finish. ``shard=(rank, world_size)`` takes every world_size-th image (torchrun); output
    names are made unique over all the images.
    """
    outdir = _writable_dir(Path(outdir))
    seen: set[str] = set()
    stems = [_unique(Path(p).stem, seen) for p in paths]
    rank, world = shard
    mine = list(zip(paths, stems))[rank::world]
    done, failed = [], []
    start = time.perf_counter()
    loader = batches(_Decoded(mine), batch_size, workers)
    bar = tqdm(total=len(mine), desc="predict", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending: list[tuple[list[Path], Future]] = []
            for batch in loader:
                good = [(path, stem, rgb) for path, stem, rgb, error in batch if error is None]
                for path, _, _, error in batch:
                    if error is not None:
                        failed.append((Path(path), error))
                        tqdm.write(f"error: {error}")
                rgbs = [rgb for _, _, rgb in good]
                preds: list[Prediction] | None
                try:
                    if not save_probs and segmenter.labels_only(rgbs):  # labels straight from the network
                        probs, preds = [], segmenter.predict_batch(rgbs, probs=False)
                    else:
                        probs = segmenter.probabilities(rgbs)
                        preds = None if segmenter.overlaps_crf else segmenter.refine(rgbs, probs)
                except ValueError as err:  # a network or CRF failure fails the whole batch, named
                    failed += [(Path(path), f"{path}: {err}") for path, _, _ in good]
                    continue
                if len(pending) >= 2:  # bounded memory: wait for the writer to be at most two batches behind
                    wait([pending[-2][1]])
                job = writer.submit(
                    _refine_and_write, segmenter, good, probs, preds, outdir, classes, palette, save_probs, alpha
                )
                pending.append(([Path(path) for path, _, _ in good], job))
                bar.update(len(batch))
            for paths, job in pending:
                error = job.exception()
                if error is not None and not isinstance(error, Exception):
                    raise error  # Ctrl-C and the like stop the run (what was written is complete)
                errors = [error] * len(paths) if error is not None else job.result()
                for path, problem in zip(paths, errors):
                    if problem is None:
                        done.append(path)
                    else:
                        failed.append((path, str(problem)))
                        tqdm.write(f"error: {problem}")
    finally:
        bar.close()  # an error is then printed on a line of its own
    return BatchResult(done, failed, time.perf_counter() - start)


def _refine_and_write(
    segmenter: Segmenter, good: list, probs: list, preds: list | None, outdir: Path, *args: Any
) -> list:
    """The CRF and argmax of one batch unless done (``preds``), then its files (on the writer thread):
    each image's write error (an Exception) or None."""
    if preds is None:
        preds = segmenter.refine([rgb for _, _, rgb in good], probs)
    errors: list[Exception | None] = []
    for (_, stem, rgb), pred in zip(good, preds):
        try:
            _write(outdir, stem, rgb, pred, *args)
            errors.append(None)
        except Exception as err:  # noqa: BLE001 - reported per file, the batch goes on
            errors.append(err)
    return errors


class _Decoded(Dataset):
    """(path, stem) pairs decoded in loader workers; a file that fails carries its one-line error."""

    def __init__(self, items: list[tuple[Path, str]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Path, str, np.ndarray | None, str | None]:
        path, stem = self.items[index]
        try:
            return path, stem, read_image(path), None
        except ValueError as err:
            return path, stem, None, str(err)


def _write(outdir: Path, stem: str, rgb: np.ndarray, pred, classes, palette, save_probs: bool, alpha: float) -> None:
    """The outputs of one image, each written atomically."""
    write_label_png(outdir / f"{stem}.png", pred.labels, palette)
    shown = overlay_with_legend(rgb, pred.labels, classes, palette, alpha)
    atomic_write(outdir / f"{stem}_overlay.png", lambda f: Image.fromarray(shown).save(f, format="PNG"))
    if save_probs:
        atomic_write(outdir / f"{stem}_probs.npy", lambda f: np.save(f, pred.probs))


def _writable_dir(outdir: Path) -> Path:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or err
        raise ValueError(f"{outdir}: cannot create the output folder ({reason})") from None
    if not os.access(outdir, os.W_OK):
        raise ValueError(f"{outdir}: the output folder is not writable")
    return outdir


def _unique(stem: str, seen: set[str]) -> str:
    name, k = stem, 1
    while name in seen:
        name, k = f"{stem}-{k}", k + 1
    seen.add(name)
    return name
