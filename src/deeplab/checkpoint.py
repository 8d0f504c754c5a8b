"""Checkpoint files: read (never running code), write (atomically, only finite weights).

Our checkpoint is a plain dict saved with ``torch.save``: ``format="deeplab"``, ``version=1``,
``arch`` (preset name), ``config`` (the full build kwargs, num_classes included), ``state_dict``,
``classes``, ``palette``, ``mean``, ``std``, plus any extra keys (the trainer adds ``train_state``
or ``run``). Files are always read with ``weights_only=True``. ``deeplab.formats`` recognises what
a file holds (ours or a peer's layout).

A checkpoint can also be a ``.safetensors`` file: the state dict as tensors and everything else
(format, arch, config, classes, palette, mean, std) as JSON in the header metadata, so loading it
involves no pickle at all. ``read_checkpoint`` returns the same dict for both.

This module knows files and dicts, not networks: ``deeplab.models`` builds models from what it reads.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from deeplab.atomic import atomic_write

FORMAT, VERSION = "deeplab", 1


class CheckpointError(ValueError):
    """A file that cannot be read or written as a checkpoint; the message names the file."""


INT8_XML, INT8_BIN = "__int8__.xml", "__int8__.bin"  # the int8 graph's bytes in a .safetensors file
READABLE = "deeplab reads .pt/.pth (ours and the peers' layouts), .safetensors, .caffemodel and .tflite"
NOT_CHECKPOINTS = {  # files people pass as --weights by mistake
    ".onnx": "ONNX model (deeplab exports these, it does not read them)",
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"), "image"),
    ".npy": "numpy array",
    ".yaml": "config file",
    ".yml": "config file",
}


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU (or a .safetensors file), one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix.lower() in NOT_CHECKPOINTS:
        raise CheckpointError(f"{path}: a {NOT_CHECKPOINTS[path.suffix.lower()]}, not a checkpoint; {READABLE}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refusing to load, the file holds Python objects beyond "
                f"tensors and plain containers (read with weights_only=True)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)}); {READABLE}") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot read checkpoint, truncated or not a PyTorch file ({_first_line(exc)}); {READABLE}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _read_safetensors(path: Path) -> dict[str, Any]:
    """Our checkpoint dict from a .safetensors file (a plain state dict when it has no metadata)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if "deeplab" not in metadata:
        return state
    try:
        meta = json.loads(metadata["deeplab"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the 'deeplab' metadata is not JSON") from None
    if isinstance(meta, dict) and isinstance(meta.get("int8"), dict) and INT8_XML in state and INT8_BIN in state:
        meta["int8"] = {**meta["int8"], "xml": state.pop(INT8_XML), "bin": state.pop(INT8_BIN)}
    return {**meta, "state_dict": state}


def non_finite_keys(state_dict: dict[str, Any]) -> list[str]:
    """Keys of floating-point tensors holding NaN or infinity."""
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def write_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Save a checkpoint dict atomically; refuse (CheckpointError) when its weights are not finite,
    so a good earlier file is never replaced by a broken one."""
    bad = non_finite_keys(checkpoint.get("state_dict", {}))
    if bad:
        raise CheckpointError(f"{path}: not written, {len(bad)} weight tensors hold NaN or infinity (first: {bad[0]})")
    if Path(path).suffix == ".safetensors":
        return _write_safetensors(Path(path), checkpoint)
    return atomic_write(path, lambda f: _torch_save(checkpoint, f))


def _torch_save(checkpoint: dict[str, Any], file: Any) -> None:
    """torch.save, its failed writes (a RuntimeError from the zip writer) as the OSError they are."""
    try:
        torch.save(checkpoint, file)
    except RuntimeError as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, OSError) and cause.errno not in (errno.ENOSPC, errno.EFBIG):
            raise OSError(cause.errno, cause.strerror) from None
        if isinstance(cause, OSError) or "write" in str(err).lower():
            raise OSError(errno.ENOSPC, "no space left on the device, or over a file size limit") from None
        raise


def _write_safetensors(path: Path, checkpoint: dict[str, Any]) -> Path:
    """The state dict as tensors, the other JSON-able keys as header metadata (no pickle)."""
    state = {k: v.detach().contiguous().cpu() for k, v in checkpoint["state_dict"].items()}
    meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "train_state", "optimizer")}
    if meta.get("int8"):  # the int8 graph's bytes as tensors, the rest of it as metadata
        int8 = dict(meta["int8"])
        state[INT8_XML], state[INT8_BIN] = int8.pop("xml"), int8.pop("bin")
        meta["int8"] = int8
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise CheckpointError(f"{path}: cannot store {exc} in safetensors metadata") from None
    data = save(state, metadata={"deeplab": text})
    return atomic_write(path, lambda f: f.write(data))


def key_problems(**keys: list[str]) -> str:
    """'missing: a, b, c; unexpected: d' for the non-empty key lists (first three of each)."""
    return "; ".join(f"{name.replace('_', ' ')}: {', '.join(found[:3])}" for name, found in keys.items() if found)
