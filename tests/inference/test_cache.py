"""The on-disk cache of converted models: keys that follow the model, entries written whole."""

from __future__ import annotations

import os
import time

import pytest
import torch

from deeplab.inference import cache
from tiny_model import TinyNet


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fingerprint_follows_weights_settings_and_tool_versions():
    a, b = TinyNet(seed=0), TinyNet(seed=0)
    assert cache.fingerprint(a) == cache.fingerprint(b)
    assert cache.fingerprint(a.train()) == cache.fingerprint(b.eval())  # the mode is not the model
    assert cache.fingerprint(a, "openvino 1") != cache.fingerprint(a, "openvino 2")
    assert cache.fingerprint(TinyNet(seed=1)) != cache.fingerprint(a)
    with torch.no_grad():
        b.backbone[1].running_var[0] += 1e-6  # a buffer, one value, barely
    assert cache.fingerprint(b) != cache.fingerprint(a)
    c = TinyNet(seed=0)
    c.output_stride = 8  # a plain attribute that a forward pass may read
    assert cache.fingerprint(c) != cache.fingerprint(a)


def test_store_then_lookup(root):
    assert cache.lookup("kind", "k1") is None
    entry = cache.store("kind", "k1", lambda folder: (folder / "model.xml").write_text("x"))
    assert entry == root / "kind" / "k1" and (entry / "model.xml").read_text() == "x"
    assert cache.lookup("kind", "k1") == entry


def test_a_failed_write_leaves_no_entry_and_warns(root):
    def fail(folder):
        (folder / "model.xml").write_text("half")
        raise RuntimeError("disk full")

    with pytest.warns(UserWarning, match="disk full"):
        assert cache.store("kind", "k1", fail) is None
    assert cache.lookup("kind", "k1") is None and list((root / "kind").iterdir()) == []


def test_the_least_recently_used_entries_go(root, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    for key in ("a", "b"):
        cache.store("kind", key, lambda folder: None)
    past = time.time() - 100
    os.utime(root / "kind" / "a", (past, past))
    os.utime(root / "kind" / "b", (past + 1, past + 1))
    cache.lookup("kind", "a")  # used: now the newest
    cache.store("kind", "c", lambda folder: None)
    assert sorted(p.name for p in (root / "kind").iterdir()) == ["a", "c"]


def test_partial_entries_of_killed_writers_are_removed_later(root):
    stale = root / "kind" / ".k1.abc"
    stale.mkdir(parents=True)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    cache.store("kind", "k2", lambda folder: None)
    assert not stale.exists() and cache.lookup("kind", "k1") is None


def test_empty_cache_dir_turns_the_cache_off(monkeypatch):
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", "")
    assert cache.cache_root() is None
    assert cache.store("kind", "k1", lambda folder: None) is None and cache.lookup("kind", "k1") is None


def test_default_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_root() == tmp_path / "deeplab"


def test_a_damaged_entry_is_found_removed_and_said(root):
    """Same-size garbled bytes in any file of an entry (or a file added later and sealed) are caught."""
    entry = cache.store("kind", "k1", lambda folder: (folder / "model.bin").write_bytes(bytes(range(256))))
    (entry / "compiled").mkdir()
    (entry / "compiled" / "blob").write_bytes(b"compiled")
    cache.seal(entry)  # what OpenVINO writes after the entry exists is sealed too
    assert cache.lookup("kind", "k1") == entry
    for name in ("model.bin", "compiled/blob"):
        entry = cache.store("kind", "k1", lambda folder: (folder / "model.bin").write_bytes(bytes(range(256))))
        (entry / "compiled").mkdir(exist_ok=True)
        (entry / "compiled" / "blob").write_bytes(b"compiled")
        cache.seal(entry)
        data = bytearray((entry / name).read_bytes())
        data[3] ^= 0xFF  # the same size, one byte garbled
        (entry / name).write_bytes(bytes(data))
        with pytest.warns(UserWarning, match=f"is damaged \\({name} does not match its digest\\): converting again"):
            assert cache.lookup("kind", "k1") is None
        assert not entry.exists()
