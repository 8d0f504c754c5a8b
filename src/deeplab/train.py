"""Trainer: SGD + poly LR, batch-norm modes, mixed precision, DDP, atomic checkpoints, exact resume.

Reproducibility: the data order and every sample's augmentation depend only on (seed, position in
the stream) (see deeplab.sampling), and every iteration reseeds the global RNGs from (seed,
iteration, rank). A checkpoint therefore only needs the weights, the optimiser, the schedule and
the iteration counter for a resumed run to end with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from deeplab.config import Config, config_to_dict
from deeplab.distributed import DistInfo, all_reduce_sum, barrier
from deeplab.optim import PolyLR, build_sgd, set_bn_mode
from deeplab.sampling import IterationBatches, SampleStream, mix_seed, seed_all

LOG_FIELDS = ("iteration", "loss", "lr", "val_miou", "seconds")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the checkpoint of the last good state."""


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    iterations: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_miou: float | None
    loss: float


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross entropy over the non-ignored pixels (0, not NaN, when every pixel is ignored)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp(min=1)


def segmentation_loss(output: Any, target: torch.Tensor, aux_weight: float = 0.4) -> torch.Tensor:
    """Loss of a model output: logits; {"out", "aux"} (aux weighted); or MSC (fused + every scale)."""
    if isinstance(output, dict):
        loss = cross_entropy(output["out"], target)
        if "aux" in output:
            loss = loss + aux_weight * cross_entropy(output["aux"], target)
        return loss
    if hasattr(output, "per_scale"):  # MultiScaleOutput(fused, per_scale) of DeepLab v2's MSC
        return cross_entropy(output.fused, target) + sum(cross_entropy(s, target) for s in output.per_scale)
    return cross_entropy(output, target)


class Trainer:
    """Trains a DeepLab per a Config; `fit()` runs to config.train.iterations.

    train_set/val_set/model default to those the config names; tests pass small ones. The data
    sets must return (image, mask) as numpy arrays without a transform: the trainer adds its own.
    """

    def __init__(
        self,
        config: Config,
        *,
        train_set: Any = None,
        val_set: Any = None,
        model: nn.Module | None = None,
        dist: DistInfo | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.dist, self.progress = config, dist or DistInfo(), progress
        t = config.train
        if t.precision == "fp16" and self.dist.device.type != "cuda":
            raise ValueError("train.precision fp16 needs a GPU; use bf16 on the CPU")
        self.output = Path(config.output)
        self.train_set = train_set if train_set is not None else self._dataset(config.data.train_split)
        if len(self.train_set) == 0:
            raise ValueError(f"the training split {config.data.train_split!r} is empty")
        if config.data.scan_masks and hasattr(self.train_set, "validate"):
            from deeplab.data import scan_masks

            scan_masks(self.train_set)  # a bad label value fails here, naming the file
        if val_set is None and config.data.val_split:
            val_set = self._dataset(config.data.val_split, **config.data.val_options)
        self.val_set = val_set
        seed_all(mix_seed(t.seed, 0))
        self.model = model if model is not None else self._build_model()
        if t.init_weights:
            self._load_weights(t.init_weights)
        self._set_meta()
        set_bn_mode(self.model, t.bn_mode)  # frozen: scale/shift leave the trainable parameters
        self.net = self._wrap(self.model.to(self.dist.device))
        self.optimizer = build_sgd(self.net, t.lr, t.momentum, t.weight_decay, t.head_lr_mult)
        self.scheduler = PolyLR(self.optimizer, t.iterations, t.lr_power)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.iteration = 0
        self.best_miou: float | None = None

    # -- setup -----------------------------------------------------------------------------
    def _dataset(self, split: str, **extra: Any) -> Any:
        from deeplab.data import build_dataset

        d = self.cfg.data
        return build_dataset(d.dataset, d.root, split, **{**d.options, **extra})

    def _build_model(self) -> nn.Module:
        from deeplab.presets import build_model

        m = self.cfg.model
        kwargs = {k: getattr(m, k) for k in ("output_stride", "multi_grid", "atrous_rates") if getattr(m, k) is not None}
        if m.aux:
            kwargs["aux"] = True
        if self.cfg.train.backbone_weights:
            kwargs["pretrained_backbone"] = self.cfg.train.backbone_weights
        return build_model(m.arch, num_classes=len(self.train_set.classes), **kwargs, **m.options)

    def _load_weights(self, path: str | Path) -> dict:
        """Load a DeepLab checkpoint's weights into the model; returns the checkpoint."""
        from deeplab.weights import read_checkpoint

        ckpt = read_checkpoint(path)
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit this config's model ({str(e).splitlines()[0]})") from None
        return ckpt

    def _set_meta(self) -> None:
        meta = self.model.meta
        meta.classes = list(self.train_set.classes)
        meta.palette = [tuple(c) for c in self.train_set.palette]

    def _wrap(self, model: nn.Module) -> nn.Module:
        t, d = self.cfg.train, self.dist
        net = model
        if self.cfg.model.train_scales:
            from deeplab.models import MultiScale

            net = MultiScale(model, scales=tuple(self.cfg.model.train_scales), fusion=self.cfg.model.fusion)
        if d.enabled:
            if d.device.type == "cuda" and t.sync_bn and t.bn_mode == "train":
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            ids = [d.device.index] if d.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        return net

    def loader(self) -> DataLoader:
        """This process's micro-batches from the current iteration on (TrainTransform applied)."""
        from deeplab.data.transforms import TrainTransform

        d, t = self.cfg.data, self.cfg.train
        meta = self.model.meta
        self.train_set.transform = TrainTransform(
            crop_size=d.crop_size, scale_range=tuple(d.scale_range), mean=meta.mean, std=meta.std, flip=d.flip
        )
        sampler = IterationBatches(t.batch_size, t.iterations, self.iteration, t.accumulate, self.dist.rank, self.dist.world_size)
        return DataLoader(
            SampleStream(self.train_set, t.seed),
            batch_sampler=sampler,
            num_workers=d.num_workers,
            pin_memory=self.dist.device.type == "cuda",
        )

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: Path, resumable: bool = True) -> Path:
        """Write the model atomically (rank 0 only): with the full training state when resumable
        (last.pt), else with a small `run` record only (best.pt: iteration, val mIoU, config)."""
        from deeplab.weights import save_checkpoint

        if self.dist.is_main:
            run = {"iteration": self.iteration, "best_miou": self.best_miou, "config": config_to_dict(self.cfg)}
            if not resumable:
                save_checkpoint(path, self.model, run=run)
                return path
            state = {
                **run,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
            }
            save_checkpoint(path, self.model, train_state=state)
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by `save` (model, optimiser, schedule, iteration)."""
        state = self._load_weights(path).get("train_state")
        if not state:
            raise ValueError(f"{path}: no training state to resume from (not written by deeplab train)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.best_miou = int(state["iteration"]), state.get("best_miou")

    # -- the loop ------------------------------------------------------------------------------
    def train_mode(self) -> None:
        """Train mode, with batch norm per train.bn_mode."""
        self.net.train()
        set_bn_mode(self.net, self.cfg.train.bn_mode)

    def _autocast(self) -> contextlib.AbstractContextManager:
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One optimiser step over the accumulated micro-batches; returns the mean loss."""
        t = self.cfg.train
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.dist.device)
        for i, (x, y) in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.net.no_sync()
            with sync:
                with self._autocast():
                    out = self.net(x.to(self.dist.device, non_blocking=True), **({"return_aux": True} if self.cfg.model.aux else {}))
                loss = segmentation_loss(out, y.to(self.dist.device, non_blocking=True), t.aux_weight) / len(micro_batches)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        loss_value = all_reduce_sum(total, self.dist).item() / self.dist.world_size
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            path = self.save(self.output / "last.pt")
            raise NonFiniteLossError(
                f"loss is {loss_value} at iteration {self.iteration + 1}; stopped, last good state saved to {path}"
            )
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return loss_value

    def validate(self) -> float:
        """mIoU over the validation set, split across processes; the model is left in train mode."""
        from deeplab.evaluate import accumulate
        from deeplab.metrics import scores

        self.model.eval()
        shard = range(self.dist.rank, len(self.val_set), self.dist.world_size)
        with torch.no_grad():
            cm, _ = accumulate(self.model, self.val_set, shard, trimap_widths=None)
        matrix = all_reduce_sum(torch.as_tensor(cm.matrix, device=self.dist.device), self.dist)
        self.train_mode()
        return scores(matrix.cpu().numpy())["miou"]

    def fit(self) -> TrainResult:
        """Train from self.iteration to config.train.iterations; checkpoints, validation, logs, plots."""
        t = self.cfg.train
        self.output.mkdir(parents=True, exist_ok=True)
        log = RunLog(self.output, self.iteration, self.dist.is_main, t.tensorboard)
        self.train_mode()
        bar = tqdm(total=t.iterations, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=not (self.progress and self.dist.is_main))  # fmt: skip
        batches, losses, loss = iter(self.loader()), [], float("nan")
        try:
            while self.iteration < t.iterations:
                seed_all(mix_seed(t.seed, 3, self.iteration, self.dist.rank))
                lr = self.optimizer.param_groups[0]["lr"]  # this iteration's (body) learning rate
                loss = self.step([next(batches) for _ in range(t.accumulate)])
                losses.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                self._periodic(log, losses, lr)
        finally:
            bar.close()
            log.close()
        return TrainResult(t.iterations, self.output / "last.pt", self._best_path(), self.best_miou, loss)

    def _periodic(self, log: "RunLog", losses: list[float], lr: float) -> None:
        """Logging, validation and checkpoints due at the current iteration."""
        t, it = self.cfg.train, self.iteration
        end = it == t.iterations
        row: dict[str, Any] = {}
        if it % t.log_every == 0 or end:
            row.update(loss=float(np.mean(losses)), lr=lr)
            losses.clear()
        if self.val_set is not None and (it % t.val_every == 0 or end):
            miou = self.validate()
            row["val_miou"] = miou
            if self.best_miou is None or miou > self.best_miou:
                self.best_miou = miou
                self.save(self.output / "best.pt", resumable=False)
        if row:
            log.write(it, row)
        if it % t.checkpoint_every == 0 or end:
            self.save(self.output / "last.pt")
            log.plot()
        barrier(self.dist)

    def _best_path(self) -> Path | None:
        return self.output / "best.pt" if self.best_miou is not None else None


class RunLog:
    """log.csv (rows after `start` from an interrupted run are dropped), TensorBoard, plots."""

    def __init__(self, output: Path, start: int, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.t0 = output / "log.csv", enabled, time.perf_counter()
        self.writer = None
        if not enabled:
            return
        rows = []
        if self.path.exists() and start > 0:
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
        self.file = open(self.path, "w", newline="")
        self.csv = csv.DictWriter(self.file, LOG_FIELDS)
        self.csv.writeheader()
        self.csv.writerows(rows)
        if tensorboard:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output / "tensorboard"))

    def write(self, iteration: int, row: dict[str, float]) -> None:
        """Append a row (and TensorBoard scalars)."""
        if not self.enabled:
            return
        self.csv.writerow({"iteration": iteration, **row, "seconds": round(time.perf_counter() - self.t0, 3)})
        self.file.flush()
        if self.writer:
            for key, value in row.items():
                self.writer.add_scalar(key, value, iteration)

    def plot(self) -> None:
        """loss.png and miou.png next to log.csv."""
        if self.enabled:
            from deeplab.plots import plot_training_curves

            plot_training_curves(self.path, self.path.parent)

    def close(self) -> None:
        """Close the files."""
        if self.enabled:
            self.file.close()
            if self.writer:
                self.writer.close()


def run_training(config: Config, resume: str | Path | None = None, device: str | None = None, progress: bool = True) -> TrainResult:
    """Train per `config` in this process (one of torchrun's when launched by it); resume="auto"
    continues from OUTPUT/last.pt."""
    from deeplab.distributed import cleanup, init_distributed

    dist = init_distributed(device)
    try:
        trainer = Trainer(config, dist=dist, progress=progress)
        if resume:
            trainer.resume(Path(config.output) / "last.pt" if resume == "auto" else resume)
        return trainer.fit()
    finally:
        cleanup()
