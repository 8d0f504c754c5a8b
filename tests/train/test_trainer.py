"""Training pieces: poly LR, head learning rate, batch-norm modes, data order, losses."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplab.train.loss import cross_entropy, segmentation_loss
from deeplab.train.optim import PolyLR, build_sgd, poly_lr, set_bn_mode
from deeplab.train.sampling import IterationBatches, SampleStream, seeded


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.classifier = nn.Conv2d(4, 3, 1)
        self.aux_classifier = None

    def forward(self, x):
        return self.classifier(self.backbone(x))


def test_poly_lr_schedule():
    net = _Net()
    opt = build_sgd(net, lr=0.01, head_lr_mult=10)
    sched = PolyLR(opt, iterations=100, power=0.9)
    seen = []
    for _ in range(100):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.01, 0.1])
    for it in (1, 37, 99):
        expected = 0.01 * (1 - it / 100) ** 0.9
        assert seen[it] == pytest.approx([expected, 10 * expected], rel=1e-12)
    assert opt.param_groups[0]["lr"] == 0.0 == poly_lr(0.01, 100, 100)


def test_head_gets_its_own_learning_rate():
    net = _Net()
    opt = build_sgd(net, lr=0.1, momentum=0.9, weight_decay=5e-4, head_lr_mult=10)
    body, head = opt.param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in net.classifier.parameters()}
    assert len(body["params"]) == 4 and head["lr"] == pytest.approx(1.0)
    assert body["momentum"] == 0.9 and body["weight_decay"] == 5e-4


def test_frozen_batch_norm_is_not_trained():
    net = _Net()
    net.train()
    set_bn_mode(net, "frozen")
    bn = net.backbone[1]
    assert not bn.training and not bn.weight.requires_grad and not bn.bias.requires_grad
    opt = build_sgd(net, lr=0.1)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(bn.weight) not in trained and id(net.backbone[0].weight) in trained
    before = bn.running_mean.clone()
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert torch.equal(bn.running_mean, before)
    with pytest.raises(ValueError, match="bn_mode"):
        set_bn_mode(net, "fixed")


def test_train_bn_mode_updates_statistics():
    net = _Net().train()
    set_bn_mode(net, "train")
    net(torch.randn(2, 3, 8, 8) + 3)
    assert net.backbone[1].training and net.backbone[1].running_mean.abs().sum() > 0


def test_batches_split_across_processes_and_accumulation():
    single = [b for b in IterationBatches(8, iterations=3)]
    assert single == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    parts = [list(IterationBatches(8, 3, accumulate=2, rank=r, world_size=2)) for r in range(2)]
    for it in range(3):  # each iteration: 2 micro-batches per process, together the global batch
        together = sorted(p for r in range(2) for b in parts[r][2 * it : 2 * it + 2] for p in b)
        assert together == single[it]
    assert list(IterationBatches(8, 3, start=2)) == single[2:]
    with pytest.raises(ValueError, match="not divisible"):
        IterationBatches(6, 3, accumulate=2, world_size=2)


class _Numbers:
    """Returns (index, an augmentation draw from the global RNGs)."""

    classes = ["a"]

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return i, (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_sample_stream_is_a_function_of_position():
    stream = SampleStream(_Numbers(), seed=1)
    epoch0 = [stream[p][0] for p in range(5)]
    epoch1 = [stream[p][0] for p in range(5, 10)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(5)) and epoch0 != epoch1
    fresh = SampleStream(_Numbers(), seed=1)
    assert fresh[7] == stream[7]  # no replay needed: position 7 alone gives the same sample
    assert SampleStream(_Numbers(), seed=2)[7] != stream[7]
    state = torch.get_rng_state()
    stream[3]
    assert torch.equal(state, torch.get_rng_state())  # global RNGs left as they were
    with pytest.raises(ValueError, match="empty"):
        SampleStream([], seed=0)


def test_seeded_restores_global_state():
    random.seed(5)
    expected = random.random()
    random.seed(5)
    with seeded(123):
        a = random.random()
    with seeded(123):
        assert random.random() == a
    assert random.random() == expected


def test_losses():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    ce = cross_entropy(logits, target)
    assert ce == pytest.approx(nn.functional.cross_entropy(logits, target, ignore_index=255).item())
    assert cross_entropy(logits, torch.full_like(target, 255)) == 0  # not NaN
    assert segmentation_loss({"out": logits, "aux": logits}, target, 0.4) == pytest.approx(1.4 * ce.item())
    msc = {"out": logits, "per_scale": [logits, logits]}
    assert segmentation_loss(msc, target) == pytest.approx(3 * ce.item())
    assert math.isfinite(segmentation_loss(logits, target).item())


# -- the Trainer, end to end on the built-in shapes -------------------------------------------------

from deeplab.data import ShapesDataset  # noqa: E402
from deeplab.train import NonFiniteLossError, Trainer  # noqa: E402
from deeplab.train.config import load_config  # noqa: E402

SIZE = 64


def _config(out, *overrides: str):
    base = [
        f"output={out}",
        "model.arch=deeplabv3-mobilenetv2",
        "model.options={width_mult: 0.25}",
        "data.dataset=shapes",
        f"data.crop_size={SIZE - 16}",
        "data.num_workers=0",
        "data.scan_masks=false",
        "data.val_split=null",
        "train.iterations=6",
        "train.batch_size=4",
        "train.lr=0.02",
        "train.checkpoint_every=3",
        "train.val_every=3",
        "train.log_every=1",
    ]
    return load_config(None, base + list(overrides))


def _shapes(n: int = 4, split: str = "train") -> ShapesDataset:
    return ShapesDataset(split, n, size=SIZE)


def _model(num_classes: int = 7, dropout: bool = True):
    from deeplab.models.presets import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3-mobilenetv2", num_classes, width_mult=0.25)
    for m in model.modules():
        if isinstance(m, nn.Dropout) and not dropout:
            m.p = 0.0
    return model


def _kill_during(trainer, iteration: int) -> None:
    """Run ``trainer.fit()`` as if the process were killed (Ctrl-C) during ``iteration``."""
    step = trainer.step

    def crashing(batches):
        if trainer.iteration == iteration - 1:
            raise KeyboardInterrupt
        return step(batches)

    trainer.step = crashing
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def _weights(path) -> dict:
    from deeplab.checkpoint import read_checkpoint

    return read_checkpoint(path)["state_dict"]


def test_resume_ends_with_the_same_weights(tmp_path):
    full = Trainer.from_config(_config(tmp_path / "full"), train_set=_shapes(), model=_model(), progress=False)
    full.fit()

    cfg = _config(tmp_path / "stopped")
    stopped = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), progress=False)
    _kill_during(stopped, 5)  # after the checkpoint of iteration 3
    resumed = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), progress=False)
    resumed.resume(tmp_path / "stopped" / "last.pt")
    assert resumed.iteration == 3
    resumed.fit()
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "stopped" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "stopped" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4", "5", "6"]


# head_lr_mult 10: under DDP the head must keep its own learning rate (v2's 10x), as in one process
_DDP_RECIPE = ("train.bn_mode=frozen", "data.scale_range=[1, 1]", "train.iterations=4", "train.head_lr_mult=10")


def _ddp_worker(rank: int, world: int, out: str, port: int) -> None:
    import os

    from deeplab.distributed import cleanup, init_distributed

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    dist = init_distributed("cpu")
    try:
        cfg = _config(out, *_DDP_RECIPE)
        Trainer.from_config(cfg, train_set=_shapes(), model=_model(dropout=False), dist=dist, progress=False).fit()
    finally:
        cleanup()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "ddp"), port), nprocs=2)
    # frozen BN and no dropout: DDP's averaged gradients equal one process's on the global batch
    # (crops of unscaled 64 px images: no ignore padding, so every micro-batch has equal weight)
    cfg = _config(tmp_path / "one", *_DDP_RECIPE)
    Trainer.from_config(cfg, train_set=_shapes(), model=_model(dropout=False), progress=False).fit()
    a, b = _weights(tmp_path / "ddp" / "last.pt"), _weights(tmp_path / "one" / "last.pt")
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5
    assert any(not torch.equal(a[k], _model().state_dict()[k]) for k in a)  # it did train


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    cfg = _config(tmp_path, "train.lr=1e30", "train.iterations=50", "train.checkpoint_every=50")
    trainer = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), progress=False)
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss is (nan|inf) at iteration \d+; stopped, last good state \(iteration \d+\) saved to .*last.pt",
    ):
        trainer.fit()
    from deeplab.checkpoint import read_checkpoint

    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert ckpt["train_state"]["iteration"] == trainer.iteration < 50
    # the last good state is entirely finite, batch-norm statistics included, and predicts
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    from deeplab import Segmenter, load_model

    probs = Segmenter(load_model(tmp_path / "last.pt"))(_shapes(1)[0][0]).probs
    assert np.isfinite(probs).all()


def test_non_finite_weights_are_never_written(tmp_path):
    from deeplab.checkpoint import CheckpointError
    from deeplab.models import save_model

    model = _model()
    save_model(tmp_path / "last.pt", model)
    before = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        model.backbone.features[0][1].running_var[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"last.pt: not written, 1 weight tensors hold NaN.*running_var"):
        save_model(tmp_path / "last.pt", model)
    assert (tmp_path / "last.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_head_learning_rate_survives_a_ddp_style_wrapper():
    class Wrapper(nn.Module):  # DistributedDataParallel keeps the model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    net = _Net()
    body, head = build_sgd(Wrapper(net), lr=0.1, head_lr_mult=10).param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in net.classifier.parameters()}
    assert head["lr"] == pytest.approx(1.0)


def _first_batch(cfg) -> torch.Tensor:
    # one image: the data order cannot differ between seeds, only the augmentation can
    trainer = Trainer.from_config(cfg, train_set=_shapes(1), model=_model(), progress=False)
    return next(iter(trainer.loader()))[0]


def test_train_seed_reaches_the_augmentation(tmp_path):
    a = _first_batch(_config(tmp_path, "train.seed=1"))
    b = _first_batch(_config(tmp_path, "train.seed=2"))
    again = _first_batch(_config(tmp_path, "train.seed=1"))
    assert torch.equal(a, again) and not torch.equal(a, b)


def test_training_loader_spawns_its_workers_where_forking_is_unsafe(tmp_path, monkeypatch):
    from deeplab import forks

    cfg = _config(tmp_path, "data.num_workers=1")
    trainer = Trainer.from_config(cfg, train_set=_shapes(1), model=_model(), progress=False)
    assert trainer.loader().multiprocessing_context is None  # forks while they are safe
    monkeypatch.setattr(forks, "_unsafe_because", "OpenVINO")
    assert trainer.loader().multiprocessing_context.get_start_method() == "spawn"


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_sample_gives_the_same_one_line_error_with_workers(tmp_path, workers):
    from PIL import Image

    from deeplab.data.shapes import write_dataset

    root = write_dataset(tmp_path / "data", {"train": 2}, size=SIZE)
    bad = root / "masks" / "train_00001.png"
    mask = np.array(Image.open(bad))
    mask[0, 0] = 9
    Image.fromarray(mask).save(bad)
    cfg = _config(
        tmp_path / "run",
        "data.dataset=folder",
        f"data.root={root}",
        "data.train_split=train",
        f"data.num_workers={workers}",
        "train.batch_size=2",
    )
    trainer = Trainer.from_config(cfg, model=_model(), progress=False)
    with pytest.raises(ValueError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith(f"{bad}: mask values [9] are not labels") and "\n" not in message


def test_bad_mask_value_stops_before_training(tmp_path):
    from PIL import Image

    from deeplab.data.shapes import write_dataset

    root = write_dataset(tmp_path / "data", {"train": 3}, size=SIZE)
    bad = root / "masks" / "train_00001.png"
    mask = np.array(Image.open(bad))
    mask[0, :3] = [9, 12, 9]
    Image.fromarray(mask).save(bad)
    cfg = _config(
        tmp_path / "run", "data.dataset=folder", f"data.root={root}", "data.train_split=train", "data.scan_masks=true"
    )
    with pytest.raises(ValueError, match=r"train_00001.png.*\[9, 12\]"):
        Trainer.from_config(cfg, model=_model(), progress=False)
    assert not (tmp_path / "run").exists()


def test_config_model_and_empty_split_errors(tmp_path):
    cfg = _config(tmp_path, "model.options={width_mult: 0.25}", "train.precision=fp16")
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        Trainer.from_config(cfg, train_set=_shapes(), model=_model(), progress=False)
    with pytest.raises(ValueError, match="empty"):
        Trainer.from_config(_config(tmp_path), train_set=[], model=_model(), progress=False)
    with pytest.raises(ValueError, match="no training state"):
        from deeplab.models import save_model

        save_model(tmp_path / "plain.pt", _model())
        Trainer.from_config(_config(tmp_path), train_set=_shapes(), model=_model(), progress=False).resume(
            tmp_path / "plain.pt"
        )


@pytest.mark.slow
def test_tiny_model_overfits_a_few_images(tmp_path):
    cfg = _config(
        tmp_path,
        "model.arch=deeplabv3plus-mobilenetv2",
        "model.options={width_mult: 0.5}",
        f"data.crop_size={SIZE}",
        "data.scale_range=[1, 1]",
        "data.flip=false",
        "train.iterations=240",
        "train.lr=0.1",
        "train.val_every=240",
        "train.checkpoint_every=240",
        "train.log_every=10",
    )
    result = Trainer.from_config(cfg, train_set=_shapes(2), val_set=_shapes(2), progress=False).fit()
    assert result.best_miou > 0.9, result
    assert (tmp_path / "best.pt").is_file()


def test_cli_train_then_evaluate(tmp_path):
    from click.testing import CliRunner

    from deeplab.apps.cli import main

    runner = CliRunner()
    args = [
        "train",
        "--config",
        "configs/shapes.yaml",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        "model.options={width_mult: 0.25}",
        "data.crop_size=48",
        "data.num_workers=0",
        "data.options={size: 64}",
        "data.val_options={num_images: 2}",
        "train.batch_size=2",
        "train.iterations=2",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trained 2 iterations" in result.output and (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "miou.png").is_file()

    result = runner.invoke(main, args[:5] + ["train.iteratons=3"])
    assert result.exit_code == 1
    assert (
        "Error: override 'train.iteratons=3': unknown config key 'train.iteratons' (did you mean 'train.iterations'?)"
        in result.output
    )
    assert "Traceback" not in result.output

    out = tmp_path / "eval"
    ev = [
        "evaluate",
        "--weights",
        str(tmp_path / "run" / "best.pt"),
        "--dataset",
        "shapes",
        "--max-images",
        "2",
        "--output",
        str(out),
    ]
    result = runner.invoke(main, ev)
    assert result.exit_code == 0, result.output
    assert "miou" in result.output and (out / "result.json").is_file() and (out / "trimap.png").is_file()
    result = runner.invoke(
        main, ev[:-1] + [str(tmp_path / "flip"), "--flip", "--label", "flip", "--compare", str(out / "result.json")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "flip" / "trimap_compare.png").is_file()
    result = runner.invoke(main, ["evaluate", "--weights", str(tmp_path / "nope.pt"), "--dataset", "shapes"])
    assert result.exit_code == 1 and "nope.pt" in result.output and "Traceback" not in result.output


def test_benchmark_iterations_path():
    from deeplab.train.timing import time_iterations

    cfg = _config("unused", "data.crop_size=33")
    r = time_iterations(cfg, iterations=1)
    assert r["seconds_per_iteration"] > 0 and r["batch_size"] == 4 and r["crop_size"] == 33


def test_msc_training_saves_the_inner_model(tmp_path):
    cfg = _config(
        tmp_path, "model.train_scales=[1.0, 0.5]", "model.fusion=max", "train.iterations=2", "train.head_lr_mult=10"
    )
    trainer = Trainer.from_config(cfg, train_set=_shapes(), progress=False)
    assert type(trainer.net).__name__ == "MultiScale"
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.02, 0.2])
    trainer.fit()
    assert _weights(tmp_path / "last.pt").keys() == trainer.model.state_dict().keys()


def test_aux_loss_and_bf16(tmp_path):
    cfg = _config(
        tmp_path,
        "model.arch=deeplabv3-resnet50",
        "model.options={}",
        "model.aux=true",
        "data.crop_size=33",
        "train.batch_size=2",
        "train.iterations=1",
        "train.precision=bf16",
        "train.bn_mode=frozen",
    )
    trainer = Trainer.from_config(cfg, train_set=_shapes(2), progress=False)
    aux = trainer.model.aux_classifier
    before = [p.detach().clone() for p in aux.parameters()]
    trainer.fit()
    assert any(not torch.equal(a, p) for a, p in zip(before, aux.parameters()))  # the aux head learned


def test_backbone_weights_from_torchvision(tmp_path, tv):
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(tv.models.mobilenet_v2(width_mult=0.25).state_dict(), path)
    cfg = _config(tmp_path, "train.iterations=1", f"train.backbone_weights={path}")
    trainer = Trainer.from_config(cfg, train_set=_shapes(), progress=False)
    expected = torch.load(path, weights_only=True)["features.0.0.weight"]
    first_conv = next(p for n, p in trainer.model.backbone.named_parameters() if p.dim() == 4)
    assert torch.equal(first_conv.detach(), expected)


def test_backbone_weights_from_the_shipped_real_weights(tmp_path, caplog):
    """train.backbone_weights takes the backbone of any checkpoint load_model reads (here the shipped
    .tflite by name): the backbone starts from it, the data are normalised as its features expect."""
    import logging

    cfg = _config(tmp_path, "train.iterations=1", "train.backbone_weights=voc-mobilenetv2", "model.options={}")
    with caplog.at_level(logging.INFO, logger="deeplab"):
        trainer = Trainer.from_config(cfg, train_set=_shapes(), progress=False)
    count = len(trainer.model.backbone.state_dict())
    assert f"voc-mobilenetv2: {count} backbone tensors from the backbone of a deeplabv3-mobilenetv2-tf" in caplog.text
    assert trainer.model.meta.mean[0] == pytest.approx(128 / 255)
    trainer.fit()
    from deeplab.models import load_model

    assert load_model(tmp_path / "last.pt").meta.mean == trainer.model.meta.mean  # travels with the weights


def test_best_checkpoint_is_small_and_loads(tmp_path):
    from deeplab.checkpoint import read_checkpoint
    from deeplab.models import load_model

    cfg = _config(
        tmp_path,
        "train.iterations=2",
        "train.val_every=2",
        "data.val_split=val",
        "data.val_options={num_images: 1}",
        "data.options={size: 64}",
    )
    Trainer.from_config(cfg, train_set=_shapes(), progress=False).fit()
    best, last = read_checkpoint(tmp_path / "best.pt"), read_checkpoint(tmp_path / "last.pt")
    assert "train_state" not in best and best["run"]["iteration"] == 2 and "optimizer" in last["train_state"]
    assert (tmp_path / "best.pt").stat().st_size < 0.7 * (tmp_path / "last.pt").stat().st_size
    model = load_model(tmp_path / "best.pt")
    assert model.meta.classes == _shapes().classes and len(model.meta.palette) == 7


def test_init_weights_reads_any_layout_and_reinitialises_a_new_classifier(tmp_path, caplog):
    """train.init_weights goes through load_model's reader: a peer's layout (VainF's MobileNetV2 keys
    here) starts training, and a checkpoint with another class count re-initialises the classifier,
    reported in one line."""
    import logging

    from deeplab.models import build_model, save_model

    source = _model(num_classes=3)
    save_model(tmp_path / "three.pt", source)
    with pytest.warns(UserWarning, match="re-initialised classifier layers classifier.4"):
        with caplog.at_level(logging.INFO, logger="deeplab"):
            trainer = Trainer.from_config(
                _config(tmp_path, f"train.init_weights={tmp_path / 'three.pt'}"), train_set=_shapes(), progress=False
            )
    loaded = len(source.state_dict()) - 2  # all but classifier.4's weight and bias
    assert f"three.pt: {loaded} tensors from a deeplabv3-mobilenetv2" in caplog.text
    assert "freshly initialised: classifier.4" in caplog.text
    ours, theirs = trainer.model.state_dict(), source.state_dict()
    assert torch.equal(ours["backbone.features.5.conv.1.0.weight"], theirs["backbone.features.5.conv.1.0.weight"])
    assert ours["classifier.4.weight"].shape[0] == 7  # the shapes data set's classes, fresh

    def vainf_key(key: str) -> str:  # our MobileNetV2 DeepLab v3 keys -> VainF's
        if key.startswith("backbone.features."):
            index, rest = key[len("backbone.features.") :].split(".", 1)
            part = "low_level_features" if int(index) < 4 else "high_level_features"
            return f"backbone.{part}.{int(index) - 4 * (int(index) >= 4)}.{rest}"
        return key.replace("classifier.", "classifier.classifier.", 1)

    torch.manual_seed(1)
    peer = build_model("deeplabv3-mobilenetv2", 7, width_mult=0.25, head_channels=256)
    torch.save({"model_state": {vainf_key(k): v for k, v in peer.state_dict().items()}}, tmp_path / "vainf.pth")
    cfg = _config(tmp_path, f"train.init_weights={tmp_path / 'vainf.pth'}")
    cfg.model.options["head_channels"] = 256
    trainer = Trainer.from_config(cfg, train_set=_shapes(), progress=False)
    for key, value in peer.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key


# -- on a GPU (scripts/gpu-check.sh) ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_on_cuda_with_mixed_precision_validates_and_resumes(tmp_path, precision):
    from deeplab.distributed import DistInfo

    dist = DistInfo(device=torch.device("cuda:0"))
    cfg = _config(tmp_path, f"train.precision={precision}", "data.val_split=val", "data.val_options={num_images: 2}")
    trainer = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), dist=dist, progress=False)
    assert (trainer.scaler is not None) == (precision == "fp16")  # GradScaler for fp16 only
    result = trainer.fit()
    assert next(trainer.model.parameters()).is_cuda and result.best_miou is not None
    resumed = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), dist=dist, progress=False)
    resumed.resume(tmp_path / "last.pt")
    assert resumed.iteration == 6


def _sync_bn_worker(rank: int, out: str, port: int) -> None:
    import os

    from deeplab.distributed import cleanup, init_distributed

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as torch_dist

    torch_dist.init_process_group("nccl", rank=0, world_size=1)
    dist = init_distributed("cuda:0")
    dist = type(dist)(rank=0, world_size=2, local_rank=0, device=dist.device)  # take the DDP + SyncBN path
    try:
        cfg = _config(out, "train.sync_bn=true", "train.iterations=2")
        trainer = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), dist=dist, progress=False)
        assert any(isinstance(m, nn.SyncBatchNorm) for m in trainer.net.modules())
    finally:
        cleanup()


@pytest.mark.gpu
def test_sync_batch_norm_under_a_one_process_nccl_group(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sync_bn_worker, args=(str(tmp_path), port), nprocs=1)


def test_resuming_with_more_iterations_runs_the_new_schedule(tmp_path, caplog):
    """A finished run resumed with a larger train.iterations trains on at the new poly schedule's
    rate (never at lr 0), says so, and its log's clock goes on; a smaller total is an error."""
    import logging

    from deeplab.train.optim import poly_lr

    Trainer.from_config(_config(tmp_path), train_set=_shapes(), model=_model(), progress=False).fit()
    longer = Trainer.from_config(_config(tmp_path, "train.iterations=10"), train_set=_shapes(), progress=False)
    with caplog.at_level(logging.INFO, logger="deeplab"):
        longer.resume(tmp_path / "last.pt")
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(poly_lr(0.02, 6, 10)) and poly_lr(0.02, 6, 10) > 0
    assert "poly schedule now runs over 10 iterations (was 6)" in caplog.text
    longer.fit()
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    seconds = [float(r.split(",")[-1]) for r in rows]
    assert [r.split(",")[0] for r in rows] == [str(i) for i in range(1, 11)] and seconds == sorted(seconds)
    assert float(rows[6].split(",")[2]) > 0  # iteration 7 trained at a learning rate above 0
    shorter = Trainer.from_config(_config(tmp_path, "train.iterations=4"), train_set=_shapes(), progress=False)
    with pytest.raises(ValueError, match="stopped at iteration 10; train.iterations=4 is below it"):
        shorter.resume(tmp_path / "last.pt")


def test_tensorboard_asked_for_but_not_installed_warns(tmp_path, monkeypatch):
    import sys

    from deeplab.train.log import RunLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.warns(UserWarning, match="tensorboard package is not installed"):
        RunLog(tmp_path, 0, True, True).close()


@pytest.mark.parametrize("lr", ["50", "500", "5000"])
def test_a_diverging_run_never_leaves_a_checkpoint_that_predicts_nan(tmp_path, lr):
    """Huge learning rates blow up the batch-norm statistics or the eval-mode outputs while the
    training loss stays finite: the run stops, and last.pt is either absent or predicts finite scores."""
    from deeplab import Segmenter, load_model

    cfg = _config(tmp_path, f"train.lr={lr}", "train.iterations=30", "train.checkpoint_every=2", "train.val_every=100")
    trainer = Trainer.from_config(cfg, train_set=_shapes(), model=_model(), progress=False)
    with pytest.raises(NonFiniteLossError, match="lower train.lr|last good state"):
        trainer.fit()
    if (tmp_path / "last.pt").exists():
        probs = Segmenter(load_model(tmp_path / "last.pt"), backend="torch")(_shapes(1)[0][0]).probs
        assert np.isfinite(probs).all()


def test_class_weights_move_the_loss_the_way_they_should():
    """Up-weighting the class the network gets most wrong raises the loss; equal weights change nothing."""
    from deeplab.train.loss import cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, :4] = 255
    plain = cross_entropy(logits, target)
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    per_class = [per_pixel[target == c].mean() for c in range(3)]
    worst = int(torch.stack(per_class).argmax())
    weights = torch.ones(3)
    assert cross_entropy(logits, target, class_weights=weights) == pytest.approx(float(plain), rel=1e-6)
    weights[worst] = 5.0
    assert cross_entropy(logits, target, class_weights=weights) > plain


def test_top_k_keeps_exactly_that_share_of_the_pixels():
    from deeplab.train.loss import cross_entropy, top_k_share

    torch.manual_seed(1)
    logits, target = torch.randn(1, 4, 10, 10), torch.randint(0, 4, (1, 10, 10))
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    hardest = per_pixel.sort(descending=True).values[:25]  # 25% of 100 pixels
    assert cross_entropy(logits, target, top_k=0.25) == pytest.approx(float(hardest.mean()), rel=1e-6)
    assert cross_entropy(logits, target, top_k=0.25) > cross_entropy(logits, target)
    assert [top_k_share(i, 0.25, 100) for i in (0, 50, 100, 200)] == [1.0, 0.625, 0.25, 0.25]
    assert top_k_share(0, 0.25, 0) == 0.25


def test_auto_class_weights_are_median_frequency_and_kept_in_the_run(tmp_path):
    import json

    from deeplab.train.loss import median_frequency_weights

    # frequencies 0.6, 0.3, 0.2 (the last class never seen): median 0.3
    assert median_frequency_weights(np.array([60, 30, 10, 0]), np.array([100, 100, 50, 0])) == pytest.approx(
        [0.5, 1.0, 1.5, 1.0]
    )
    trainer = Trainer.from_config(_config(tmp_path, "loss.class_weights=auto"), train_set=_shapes(), progress=False)
    stored = json.loads((tmp_path / "class_weights.json").read_text())
    assert stored["classes"] == list(_shapes().classes) and len(stored["weights"]) == 7
    assert torch.allclose(trainer.class_weights, torch.tensor(stored["weights"]))
    with pytest.raises(ValueError, match="loss.class_weights has 2 weights, the data set 7 classes"):
        Trainer.from_config(_config(tmp_path, "loss.class_weights=[1, 2]"), train_set=_shapes(), progress=False)
    trainer = Trainer.from_config(
        _config(tmp_path, "loss.top_k_percent_pixels=0.3", "loss.hard_example_mining_step=2", "train.iterations=3"),
        train_set=_shapes(),
        progress=False,
    )
    assert trainer.fit().iterations == 3  # trains with mining


@pytest.mark.slow
def test_fine_tuning_the_real_weights_on_a_folder_of_palette_masks(tmp_path):
    """configs/finetune-folder.yaml in one command: the shipped .tflite weights, VOC-coloured masks
    read through the named palette, three iterations, then resumed exactly."""
    import shutil
    from pathlib import Path

    from click.testing import CliRunner

    from deeplab.apps.cli import main
    from deeplab.checkpoint import read_checkpoint

    photos = Path(deeplab_assets()) / "photos"
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for n in ("1", "23", "114"):
        shutil.copy(photos / f"voc-{n}.png", tmp_path / "data" / "images" / f"{n}.png")
        shutil.copy(photos / f"voc-{n}_target.png", tmp_path / "data" / "masks" / f"{n}.png")
    config = Path(__file__).resolve().parents[2] / "configs" / "finetune-folder.yaml"
    common = [
        "train",
        "--config",
        str(config),
        f"data.root={tmp_path / 'data'}",
        "data.crop_size=97",
        "train.batch_size=2",
    ]
    common += ["train.checkpoint_every=3", "--quiet"]
    straight = CliRunner().invoke(main, [*common, "train.iterations=6", "--output", str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output
    overrides = [*common[3:-1], "train.iterations=6", f"output={tmp_path / 'split'}"]
    stopped = Trainer.from_config(load_config(str(config), overrides), progress=False)
    _kill_during(stopped, 4)  # after the checkpoint of iteration 3
    second = CliRunner().invoke(main, [*common, "train.iterations=6", "--output", str(tmp_path / "split"), "--resume"])
    assert second.exit_code == 0, second.output
    a, b = (read_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "split"))
    assert a["arch"] == "deeplabv3-mobilenetv2-tf" and a["classes"][3] == "bird"
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def deeplab_assets() -> str:
    from importlib import resources

    return str(resources.files("deeplab") / "assets")


def test_tensorboard_gets_the_class_ious_and_validation_pictures(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _config(
        tmp_path,
        "train.iterations=2",
        "train.val_every=2",
        "train.tensorboard=true",
        "data.val_split=val",
        "data.val_options={num_images: 2}",
        "data.options={size: 64}",
    )
    Trainer.from_config(cfg, train_set=_shapes(), progress=False).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "val_iou/background" in tags["scalars"] and "val_miou" in tags["scalars"]
    assert sorted(tags["images"]) == ["val/0", "val/1"]  # two validation images, photo | truth | prediction
    image = events.Images("val/0")[0]
    assert image.width == 3 * image.height
