"""The CLI's shared options: declared once, the same in every command, turned into one Segmenter."""

from __future__ import annotations

import click
import numba
import pytest
import torch

from deeplab.apps.cli import main
from deeplab.apps.options import SEGMENTER_KEYS, naming, one_line_errors, segmenter_from_options
from tiny_model import TinyNet


def _options(command: str) -> dict[str, click.Option]:
    return {p.name: p for p in main.commands[command].params if isinstance(p, click.Option)}


def test_predict_and_evaluate_take_the_same_segmenter_options():
    predict, evaluate = _options("predict"), _options("evaluate")
    for key in (*SEGMENTER_KEYS, "threads", "weights", "batch_size", "workers"):
        a, b = predict[key], evaluate[key]
        assert (a.opts, a.secondary_opts, a.default, a.type.to_info_dict()) == (
            b.opts,
            b.secondary_opts,
            b.default,
            b.type.to_info_dict(),
        )
    assert predict["flip"].secondary_opts == ["--no-flip"] and not predict["fusion"].required


def test_a_preset_then_the_explicit_options():
    seg = segmenter_from_options(TinyNet(), preset="deeplabv2", scales="1,0.5", backend="torch")
    assert seg.scales == (1.0, 0.5) and seg.fusion == "max" and not seg.flip  # scales given, the rest v2's
    seg = segmenter_from_options(TinyNet(), crf=True, tile="32", backend="torch")
    assert seg.crf is not None and seg.tile == (32, 32) and seg.scales == (1.0,)


def test_threads_means_the_same_everywhere():
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        for command in ("predict", "evaluate", "crf", "train"):
            option = _options(command)["threads"]
            option.callback(None, option, 1)
            assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
            torch.set_num_threads(2)
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)


def test_errors_are_one_line_and_name_the_file():
    with pytest.raises(click.ClickException, match=r"^w.pt: bad\Z"):
        with one_line_errors(), naming("w.pt"):
            raise ValueError("bad\n  deep details")
    with pytest.raises(click.ClickException, match=r"^other.pt is broken\Z"):
        with one_line_errors(), naming("other.pt"):
            raise ValueError("other.pt is broken")
