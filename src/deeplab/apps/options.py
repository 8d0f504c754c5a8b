"""The command line's shared options, declared once, and what turns them into library objects.

Every command that segments takes the same segmenter options with the same meaning; choices come
from the library's own constants, so a new backend or strategy appears here by itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numba
import torch
from torch import nn

from deeplab.crf import DenseCRF
from deeplab.devices import PRECISIONS, resolve_device
from deeplab.inference import PRESETS, Segmenter
from deeplab.inference.backends import BACKENDS
from deeplab.inference.segmenter import FUSIONS
from deeplab.models import DEFAULT_WEIGHTS

OUT_DIR = click.Path(file_okay=False)
POSITIVE = click.FloatRange(0, min_open=True)


@contextmanager
def one_line_errors(*kinds: type[Exception]) -> Iterator[None]:
    """The library's errors (ValueError and its kinds: bad files, bad settings; and ``kinds``) as
    one-line click errors."""
    try:
        yield
    except (ValueError, FileNotFoundError, *kinds) as err:  # type: ignore[misc]  # a tuple of classes
        text = str(err).strip()
        raise click.ClickException(text.splitlines()[0] if text else repr(err)) from None


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """ValueErrors raised inside that do not name ``path`` get it in front: the user sees which file."""
    try:
        yield
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from None


def floats(text: str | None, name: str) -> tuple[float, ...] | None:
    """Parse "0.5,0.75,1" into positive floats (None stays None)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=name)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise click.BadParameter(f"expected positive numbers, got {text!r}", param_hint=name)
    return values


def output_file_option(help: str) -> Callable:
    """``-o/--output FILE``, required: a file to write, its folder checked writable before any work."""
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), callback=writable_path, help=help
    )


def writable_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A usage error when a folder above an output path is a regular file (nothing could be written)."""
    if value is None:
        return value
    for parent in Path(value).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise click.BadParameter(f"{parent} is a file, not a folder", param=param)
            break
    return value


def _device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A usage error for a device name torch does not know or this machine does not have."""
    if value is not None:
        try:
            resolve_device(value)
        except ValueError as err:
            raise click.BadParameter(str(err), param=param) from None
    return value


def _threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Apply --threads at once: torch's (and OpenVINO's, which follows torch's) and the CRF's (numba's)."""
    if value is not None:
        torch.set_num_threads(value)
        numba.set_num_threads(min(value, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    return value


def weights_option(required: bool = True, help: str | None = None, shipped_default: bool = False) -> Callable:
    """--weights: a checkpoint file of any layout ``load_model`` reads, or a shipped weights' name;
    ``shipped_default``: optional, the command then uses ``DEFAULT_WEIGHTS``."""
    text = "Checkpoint: ours (.pt, .safetensors), a peer's (see deeplab info), .caffemodel, .tflite, or a shipped name"
    if shipped_default:
        required, text = False, f"{text} (default: {DEFAULT_WEIGHTS})"
    return click.option("--weights", required=required, type=click.Path(dir_okay=False), help=help or f"{text}.")


device_option = click.option(
    "--device", callback=_device, help="cpu, cuda, cuda:N or mps (default: the first GPU when there is one)."
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(1),
    callback=_threads,
    expose_value=False,
    help="CPU threads for the network and the CRF (default: all cores).",
)

SEGMENTER_OPTIONS = [
    click.option(
        "--preset",
        type=click.Choice(list(PRESETS)),
        help="A paper's strategy: deeplabv2 = max over scales 1,.75,.5; deeplabv3 = mean over .5..1.75 + flip.",
    ),
    click.option("--scales", help="Comma-separated scales, e.g. 0.5,0.75,1 (default 1, or the preset's)."),
    click.option("--fusion", type=click.Choice(FUSIONS), help="Fuse mean probabilities or max logits (default mean)."),
    click.option("--flip/--no-flip", default=None, help="Average with the left-right flipped image."),
    click.option("--tile", help="Sliding window H,W (or one number); automatic for large images."),
    click.option(
        "--overlap",
        type=click.FloatRange(0, 1, max_open=True),
        default=1 / 3,
        show_default="1/3",
        help="Window overlap.",
    ),
    click.option("--crf", is_flag=True, help="Refine with the fully connected CRF."),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fp32",
        show_default=True,
        help="bf16: GPUs and CPUs with AVX512-BF16/AMX; fp16: GPUs.",
    ),
    device_option,
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default="auto",
        show_default=True,
        help="auto: OpenVINO (fastest on CPUs; pip install 'deeplab[openvino]') for fp32 on the CPU where "
        "installed, else torch. A model's first OpenVINO run converts it (seconds), later runs read the cache.",
    ),
    threads_option,
]
SEGMENTER_KEYS = ("preset", "scales", "fusion", "flip", "tile", "overlap", "crf", "precision", "device", "backend")


def segmenter_options(command: Callable) -> Callable:
    """Add the segmenter options to a command; it receives them as one dict, ``segmenter``."""

    @functools.wraps(command)
    def wrapped(**kwargs: Any) -> Any:
        kwargs["segmenter"] = {key: kwargs.pop(key) for key in SEGMENTER_KEYS}
        return command(**kwargs)

    for option in reversed(SEGMENTER_OPTIONS):
        wrapped = option(wrapped)
    return wrapped


def segmenter_from_options(
    model: nn.Module,
    preset: str | None = None,
    scales: str | tuple[float, ...] | None = None,
    fusion: str | None = None,
    flip: bool | None = None,
    tile: str | tuple[float, ...] | None = None,
    overlap: float = 1 / 3,
    crf: bool = False,
    precision: str = "fp32",
    device: str | None = None,
    backend: str = "auto",
) -> Segmenter:
    """The Segmenter the options describe: a paper's strategy (``preset``), then what is given explicitly."""
    settings = dict(PRESETS[preset]) if preset else {}
    scales = floats(scales, "--scales") if isinstance(scales, str) else scales
    given = {"scales": scales, "fusion": fusion, "flip": flip}
    settings.update({k: v for k, v in given.items() if v is not None})
    tile_size = floats(tile, "--tile") if isinstance(tile, str) else tile
    if tile_size is not None and len(tile_size) not in (1, 2):
        raise click.BadParameter("expected H,W or one number", param_hint="--tile")
    window = tuple(int(t) for t in tuple(tile_size) * 2)[-2:] if tile_size else None
    refine = DenseCRF() if crf else None
    return Segmenter(
        model, tile=window, overlap=overlap, crf=refine, precision=precision, backend=backend, device=device, **settings
    )
