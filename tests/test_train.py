"""Training pieces: poly LR, head learning rate, batch-norm modes, data order, losses."""

from __future__ import annotations

import math
import random
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from deeplab.optim import PolyLR, build_sgd, poly_lr, set_bn_mode
from deeplab.sampling import IterationBatches, SampleStream, seeded
from deeplab.train import cross_entropy, segmentation_loss


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
    for it in range(100):
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
    msc = namedtuple("MultiScaleOutput", "fused per_scale")(logits, [logits, logits])
    assert segmentation_loss(msc, target) == pytest.approx(3 * ce.item())
    assert math.isfinite(segmentation_loss(logits, target).item())
