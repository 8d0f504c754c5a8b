"""Training iteration: `deeplab train`'s step against a plain PyTorch loop, same model, batch, crop.

Both take the same pre-made batch (data loading is measured apart: it runs in loader workers
during training), do a forward pass, cross entropy (ignore 255), backward and an SGD step
(momentum 0.9, weight decay 1e-4). Ours is Trainer.step: plus the poly schedule, the head-LR
parameter groups, the batch-norm mode, the finite-loss check and the copy of the last good state.
Timed round-robin (one of each in turn) so machine load hits both alike; prints the median
seconds per iteration and the overhead in percent.

    python benchmarks/bench_train.py [--iterations 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from deeplab.train import Trainer, load_config
from deeplab.train.timing import NUM_CLASSES, SyntheticSet
from deeplab.train.trainer import build_model_for

CASES = {  # name: (config, overrides)
    "shapes recipe (v3+ MobileNetV2, batch 8, crop 192)": ("configs/shapes.yaml", []),
    "v3 ResNet-50 (batch 2, crop 321)": (
        "configs/shapes.yaml",
        ["model.arch=deeplabv3-resnet50", "train.batch_size=2", "data.crop_size=321", "model.options={}"],
    ),
}


def plain_step(model, optimizer, x, y) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, ignore_index=255)
    loss.backward()
    optimizer.step()
    return loss.item()


def measure(config_path: str, overrides: list[str], iterations: int) -> tuple[float, float]:
    cfg = load_config(config_path, overrides)
    cfg.data.val_split, cfg.train.iterations = None, iterations + 10
    cfg.train.backbone_weights = cfg.train.init_weights = None
    classes = NUM_CLASSES[cfg.data.dataset]
    torch.manual_seed(0)
    model = build_model_for(cfg, classes)
    reference = copy.deepcopy(model).train()
    b, s = cfg.train.batch_size, cfg.data.crop_size
    x, y = torch.randn(b, 3, s, s), torch.randint(0, classes, (b, s, s))
    with tempfile.TemporaryDirectory() as tmp:
        cfg.output = tmp
        trainer = Trainer(cfg, model, SyntheticSet(s, classes, b), progress=False)
        trainer.train_mode()
        optimizer = torch.optim.SGD(reference.parameters(), lr=cfg.train.lr, momentum=0.9, weight_decay=1e-4)
        runs = {"ours": lambda: trainer.step([(x, y)]), "plain": lambda: plain_step(reference, optimizer, x, y)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(iterations + 1):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if i:  # the first is a warm-up
                    times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["plain"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.iterations} iterations each\n")
    print(f"{'case':<52} {'plain s/it':>10} {'ours s/it':>10} {'overhead':>9}")
    for name, (path, overrides) in CASES.items():
        ours, plain = measure(path, overrides, args.iterations)
        print(f"{name:<52} {plain:>10.3f} {ours:>10.3f} {100 * (ours / plain - 1):>8.1f}%", flush=True)


if __name__ == "__main__":
    main()
