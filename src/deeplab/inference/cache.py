"""Converted models kept on disk, so that a runtime's set-up (the ONNX export: seconds) is paid once
per model rather than once per process.

An entry is a folder named by the model's fingerprint (``fingerprint``: its weights, structure and
the source of its classes, and the versions of the tools that convert it), written under a
temporary name and renamed when complete, so a reader never sees half an entry and two processes
may write the same one. Every entry carries the SHA-256 of each of its files (``MANIFEST``, written
last; ``seal`` adds files a runtime writes into it later); ``lookup`` checks them and removes, with a
one-line warning, an entry whose files were damaged or changed, so it is converted again. The root is ``$DEEPLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/deeplab``, else
``~/.cache/deeplab``; ``DEEPLAB_CACHE_DIR=""`` turns the cache off. The least recently used entries
beyond ``MAX_ENTRIES`` of a kind are removed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deeplab.atomic import atomic_write

MAX_ENTRIES = 4  # per kind: an OpenVINO entry of a ResNet-101 model holds hundreds of MB (IR + compiled blob)
FORMAT = 2  # bump when what an entry holds changes
MANIFEST = "sha256.json"  # {relative path: SHA-256} of the entry's files, written last


def cache_root() -> Path | None:
    """The cache's folder, or None where ``DEEPLAB_CACHE_DIR`` is set empty (cache off)."""
    explicit = os.environ.get("DEEPLAB_CACHE_DIR")
    if explicit is not None:
        return Path(explicit).expanduser() if explicit else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deeplab"


def fingerprint(model: nn.Module, *versions: str) -> str:
    """A hex digest that changes when the model's weights, structure or code change, or the
    ``versions`` of the tools given (what converts the model)."""
    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {' '.join(versions)}".encode())
    digest.update(repr(model).encode())
    for name, module in model.named_modules():
        digest.update(f"{name} {type(module).__module__}.{type(module).__qualname__}".encode())
        settings = sorted((k, repr(v)) for k, v in vars(module).items() if k != "training" and _plain(v))
        digest.update(repr(settings).encode())
    sources = {_source(type(module)) for module in model.modules()}
    for path in sorted(p for p in sources if p is not None):
        digest.update(Path(path).read_bytes())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()[:32]


def _plain(value: object) -> bool:
    """Attributes that may steer a forward pass (strides, flags, rates), not sub-modules or tensors."""
    return isinstance(value, (bool, int, float, str, tuple, list, type(None)))


def _source(cls: type) -> str | None:
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):  # built-in classes
        return None


def lookup(kind: str, key: str) -> Path | None:
    """The folder of a complete entry, marked as just used; None when there is none."""
    root = cache_root()
    entry = root / kind / key if root is not None else None
    if entry is None or not entry.is_dir():
        return None
    problem = _damage(entry)
    if problem is not None:
        warnings.warn(f"the cached conversion in {entry} is damaged ({problem}): converting again", stacklevel=3)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    try:
        os.utime(entry)
    except OSError:
        pass
    return entry


def seal(entry: Path) -> None:
    """Record the SHA-256 of every file of ``entry`` (those a runtime added since included), atomically."""
    digests = {
        str(p.relative_to(entry)): _sha256(p) for p in sorted(entry.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    text = json.dumps(digests, indent=0).encode()
    try:
        atomic_write(entry / MANIFEST, lambda f: f.write(text))
    except (OSError, ValueError) as err:  # atomic_write's WriteError
        warnings.warn(f"cannot seal the cached conversion in {entry}: {err}", stacklevel=3)


def _damage(entry: Path) -> str | None:
    """What is wrong with an entry's files against its manifest, or None where they all match."""
    try:
        digests = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    for name, digest in digests.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its digest"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store(kind: str, key: str, write: Callable[[Path], None]) -> Path | None:
    """Make an entry: ``write(folder)`` fills a temporary folder, renamed to the entry when complete.

    Returns the entry, or None (with a warning) where the cache is off or its folder refuses.
    """
    root = cache_root()
    if root is None:
        return None
    folder = root / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
    except OSError as err:
        warnings.warn(f"cannot cache converted models in {folder}: {err}", stacklevel=3)
        return None
    entry = folder / key
    try:
        write(partial)
        seal(partial)
    except Exception as err:  # a full disk: run on without the entry
        shutil.rmtree(partial, ignore_errors=True)
        warnings.warn(f"cannot cache the converted model in {folder}: {err}", stacklevel=3)
        return None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        partial.rename(entry)
    except OSError:  # another process wrote the same entry first
        shutil.rmtree(partial, ignore_errors=True)
        return entry if entry.is_dir() else None
    _evict(folder, keep=entry)
    return entry


def _evict(folder: Path, keep: Path) -> None:
    """Remove the least recently used entries beyond MAX_ENTRIES (never ``keep``) and the partial
    ones of writers killed over an hour ago."""
    folders = [p for p in folder.iterdir() if p.is_dir()]
    entries = sorted((p for p in folders if not p.name.startswith(".")), key=_mtime)
    stale = [p for p in folders if p.name.startswith(".") and _mtime(p) < time.time() - 3600]
    for old in entries[:-MAX_ENTRIES] + stale:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
