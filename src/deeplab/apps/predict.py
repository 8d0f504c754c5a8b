"""``deeplab predict``: segment image files and write label PNGs, overlays and probabilities.

Every output is written atomically (temporary file + rename): an interrupted run never leaves a
truncated file under its final name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from deeplab.apps.viz import overlay_with_legend
from deeplab.atomic import atomic_write
from deeplab.imageio import read_image, write_label_png
from deeplab.inference import Segmenter


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
) -> BatchResult:
    """Segment each image; write NAME.png (palette labels), NAME_overlay.png, NAME_probs.npy.

    A failing image is reported and skipped; the others still finish. ``shard=(rank, world_size)``
    takes every world_size-th image (torchrun); output names are made unique over all the images.
    """
    outdir = _writable_dir(Path(outdir))
    done, failed, seen = [], [], set()
    stems = [_unique(Path(p).stem, seen) for p in paths]
    rank, world = shard
    mine = list(zip(paths, stems))[rank::world]
    start = time.perf_counter()
    for path, stem in tqdm(mine, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            rgb = read_image(path)
            pred = segmenter(rgb)
            write_label_png(outdir / f"{stem}.png", pred.labels, palette)
            shown = overlay_with_legend(rgb, pred.labels, classes, palette, alpha)
            atomic_write(outdir / f"{stem}_overlay.png", lambda f: Image.fromarray(shown).save(f, format="PNG"))
            if save_probs:
                atomic_write(outdir / f"{stem}_probs.npy", lambda f: np.save(f, pred.probs))
        except ValueError as err:
            failed.append((Path(path), str(err)))
            tqdm.write(f"error: {err}")
            continue
        done.append(Path(path))
    return BatchResult(done, failed, time.perf_counter() - start)


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
