"""Trainer: SGD + poly LR, batch-norm modes, mixed precision, DDP, atomic checkpoints, exact resume.

Reproducibility: the data order and every sample's augmentation depend only on (seed, position in
the stream) (see deeplab.sampling), and every iteration reseeds the global RNGs from (seed,
iteration, rank). A checkpoint therefore only needs the weights, the optimiser, the schedule and
the iteration counter for a resumed run to end with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from deeplab import forks
from deeplab.atomic import atomic_write
from deeplab.checkpoint import non_finite_keys, read_checkpoint
from deeplab.data import DatasetError, TrainTransform, build_dataset, class_frequencies, scan_masks
from deeplab.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from deeplab.evaluation import accumulate
from deeplab.inference import Segmenter
from deeplab.metrics import scores
from deeplab.models import (
    DeepLab,
    MultiScale,
    build_model,
    load_backbone_weights,
    load_model,
    load_weights,
    save_model,
)
from deeplab.train.config import Config, config_to_dict
from deeplab.train.log import RunLog
from deeplab.train.loss import median_frequency_weights, segmentation_loss, top_k_share
from deeplab.train.optim import PolyLR, build_sgd, set_bn_mode
from deeplab.train.sampling import IterationBatches, SampleFailure, SampleStream, collate, mix_seed, seed_all

log = logging.getLogger(__name__)
PANELS = 3  # validation images shown in TensorBoard at each validation


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


class Trainer:
    """Trains a DeepLab: ``Trainer.from_config(config)`` builds the parts a config names,
    ``Trainer(config, model, train_set, val_set)`` takes them; ``fit()`` runs to train.iterations.

    Args:
        config: the recipe (``train.config.Config``: model, data, train sections).
        model: the DeepLab to train (``build_model``), moved to the process's device.
        train_set, val_set: data sets of (image, mask) numpy pairs without a transform (the trainer
            adds its own); val_set None skips validation.
        dist: the torchrun process group (``distributed.init_distributed``); one process when None.
        progress: draw a progress bar.
        on_checkpoint: called with the log.csv path after each checkpoint (the CLI draws the curves).
        lr: overrides train.lr (the timing tool uses 0: the same work, unchanged weights).
    """

    def __init__(
        self,
        config: Config,
        model: DeepLab,
        train_set: Any,
        val_set: Any = None,
        *,
        dist: DistInfo | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[Path], Any] | None = None,
        lr: float | None = None,
    ) -> None:
        self.cfg, self.dist, self.progress, self.on_checkpoint = config, dist or DistInfo(), progress, on_checkpoint
        t = config.train
        if t.precision == "fp16" and self.dist.device.type != "cuda":
            raise ValueError("train.precision fp16 needs a GPU; use bf16 on the CPU")
        if len(train_set) == 0:
            raise ValueError(f"the training split {config.data.train_split!r} is empty")
        self.output = Path(config.output)
        self.train_set, self.val_set, self.model = train_set, val_set, model
        self._set_meta()
        set_bn_mode(self.model, t.bn_mode)  # frozen: scale/shift leave the trainable parameters
        self.net = self._wrap(self.model.to(self.dist.device))
        self._forward_kwargs = {} if config.model.train_scales else {"return_aux": True}
        # built on the bare model, not on the DDP/MSC wrapper, so the head keeps its own group
        base_lr = t.lr if lr is None else lr
        self.optimizer = build_sgd(self.model, base_lr, t.momentum, t.weight_decay, t.head_lr_mult)
        self.scheduler = PolyLR(self.optimizer, t.iterations, t.lr_power)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.class_weights = self._class_weights()
        self.iteration = 0
        self.best_miou: float | None = None
        self._good: list[torch.Tensor] | None = None  # see _remember_good_state
        self._good_iteration = 0
        self._last_images: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        train_set: Any = None,
        val_set: Any = None,
        model: DeepLab | None = None,
        dist: DistInfo | None = None,
        progress: bool = True,
        on_checkpoint: Callable[[Path], Any] | None = None,
    ) -> Trainer:
        """Build the data sets and the model the config names (those given are used as they are)."""
        d, t = config.data, config.train
        if train_set is None:
            train_set = build_dataset(d.dataset, d.root, d.train_split, **d.options)
        if d.scan_masks and hasattr(train_set, "validate"):
            scan_masks(train_set, progress)  # a bad file fails here, naming the file, not mid-training
        if val_set is None and d.val_split:
            val_set = build_dataset(d.dataset, d.root, d.val_split, **{**d.options, **d.val_options})
        seed_all(mix_seed(t.seed, 0))
        from_weights = model is None and config.model.arch is None  # built from train.init_weights itself
        if model is None:
            model = build_model_for(config, len(train_set.classes))
        if t.init_weights and not from_weights:
            log.info(load_weights(model, t.init_weights))  # any layout; a new class count re-initialises the classifier
        return cls(config, model, train_set, val_set, dist=dist, progress=progress, on_checkpoint=on_checkpoint)

    # -- setup -----------------------------------------------------------------------------
    def _class_weights(self) -> torch.Tensor | None:
        """loss.class_weights as a tensor: a given list (one per class), or "auto": median-frequency
        balancing over the training masks, computed once and kept in OUTPUT/class_weights.json."""
        wanted, classes = self.cfg.loss.class_weights, list(self.train_set.classes)
        if wanted is None:
            return None
        if wanted == "auto":
            path = self.output / "class_weights.json"
            stored = json.loads(path.read_text()) if path.is_file() else None
            if stored is None or stored.get("classes") != classes:
                pixels, image_pixels = class_frequencies(self.train_set, self.progress and self.dist.is_main)
                stored = {"classes": classes, "weights": median_frequency_weights(pixels, image_pixels)}
                if self.dist.is_main:
                    atomic_write(path, lambda f: f.write(json.dumps(stored, indent=1).encode()))
            wanted = stored["weights"]
        if len(wanted) != len(classes):
            raise ValueError(f"loss.class_weights has {len(wanted)} weights, the data set {len(classes)} classes")
        return torch.tensor(wanted, dtype=torch.float32, device=self.dist.device)

    def _set_meta(self) -> None:
        meta = self.model.meta
        meta.classes = list(self.train_set.classes)
        meta.palette = [tuple(c) for c in self.train_set.palette]

    def _wrap(self, model: nn.Module) -> nn.Module:
        t, d = self.cfg.train, self.dist
        net = model
        if self.cfg.model.train_scales:
            net = MultiScale(model, scales=tuple(self.cfg.model.train_scales), fusion=self.cfg.model.fusion)
        if d.enabled:
            if d.device.type == "cuda" and t.sync_bn and t.bn_mode == "train":
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            ids = [d.device.index] if d.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        return net

    def loader(self) -> DataLoader:
        """This process's micro-batches from the current iteration on (TrainTransform applied,
        each sample's augmentation drawn from (train.seed, its position in the stream))."""
        d, t = self.cfg.data, self.cfg.train
        meta = self.model.meta
        transform = TrainTransform(
            crop_size=d.crop_size,
            scale_range=(d.scale_range[0], d.scale_range[1]),
            mean=meta.mean,
            std=meta.std,
            flip=d.flip,
        )
        sampler = IterationBatches(
            t.batch_size, t.iterations, self.iteration, t.accumulate, self.dist.rank, self.dist.world_size
        )
        return DataLoader(
            SampleStream(self.train_set, t.seed, transform),
            batch_sampler=sampler,
            num_workers=d.num_workers,
            multiprocessing_context=forks.dataloader_context() if d.num_workers else None,
            collate_fn=collate,
            pin_memory=self.dist.device.type == "cuda",
        )

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: Path, resumable: bool = True) -> Path:
        """Write the model atomically (rank 0 only): with the full training state when resumable
        (last.pt), else with a small `run` record only (best.pt: iteration, val mIoU, config)."""
        if self.dist.is_main:
            run = {"iteration": self.iteration, "best_miou": self.best_miou, "config": config_to_dict(self.cfg)}
            if not resumable:
                save_model(path, self.model, run=run)
                return path
            state = {
                **run,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
            }
            save_model(path, self.model, train_state=state)
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by `save` (model, optimiser, schedule, iteration)."""
        state = _resume_weights(self.model, path).get("train_state")
        if not state:
            raise ValueError(f"{path}: no training state to resume from (not written by deeplab train)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.best_miou = int(state["iteration"]), state.get("best_miou")
        self._extend_schedule(path)

    def _extend_schedule(self, path: str | Path) -> None:
        """A resumed run asked for another total: the poly schedule runs over the new total from here
        (said on screen); fewer iterations than already done is an error."""
        total, saved = self.cfg.train.iterations, self.scheduler.iterations
        if total == saved:
            return
        if total < self.iteration:
            raise ValueError(
                f"{path}: the run stopped at iteration {self.iteration}; train.iterations={total} is below it"
            )
        self.scheduler.iterations = total
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
            group["lr"] = lr
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        log.info(
            "resuming at iteration %d: the poly schedule now runs over %d iterations (was %d), lr %.3g",
            self.iteration,
            total,
            saved,
            self.optimizer.param_groups[0]["lr"],
        )

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
        buffers = self._buffers()  # batch-norm statistics before this step's forward passes
        self._last_images = micro_batches[0][0]  # what the divergence checks predict on
        total = torch.zeros((), device=self.dist.device)
        for i, (x, y) in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else cast(Any, self.net).no_sync()
            with sync:
                with self._autocast():  # the output is a dict: {"out", "aux"?} or MSC's {"out", "per_scale"}
                    out = self.net(x.to(self.dist.device, non_blocking=True), **self._forward_kwargs)
                target = y.to(self.dist.device, non_blocking=True)
                top_k = top_k_share(
                    self.iteration, self.cfg.loss.top_k_percent_pixels, self.cfg.loss.hard_example_mining_step
                )
                loss = segmentation_loss(out, target, t.aux_weight, self.class_weights, top_k) / len(micro_batches)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        loss_value = all_reduce_sum(total, self.dist).item() / self.dist.world_size
        if not math.isfinite(loss_value):
            self._stop_non_finite(loss_value, buffers, micro_batches[0][0])
        self._remember_good_state()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return loss_value

    def _buffers(self) -> dict[str, torch.Tensor]:
        """Copies of the batch-norm running statistics (a NaN forward pass corrupts them)."""
        if self.cfg.train.bn_mode != "train":
            return {}
        return {k: b.detach().clone() for k, b in self.model.named_buffers() if b.is_floating_point()}

    def _state_tensors(self) -> list[torch.Tensor]:
        """Every tensor of the training state: weights, statistics, momentum buffers."""
        momentum = [self.optimizer.state.get(p, {}).get("momentum_buffer") for p in self.model.parameters()]
        return list(self.model.state_dict().values()) + [m for m in momentum if m is not None]

    def _remember_good_state(self) -> None:
        """Copy the state whose loss was just found finite (before the optimiser moves it), so a
        later non-finite loss can stop with a state that is known to compute; reuses its buffers."""
        current = self._state_tensors()
        with torch.no_grad():
            if self._good is None or len(self._good) != len(current):
                self._good = [t.detach().clone() for t in current]
            else:
                for dst, src in zip(self._good, current):
                    dst.copy_(src)
        self._good_iteration = self.iteration

    def _stop_non_finite(self, loss_value: float, buffers: dict[str, torch.Tensor], images: torch.Tensor) -> None:
        """Go back to the last state whose loss was finite, save it if it still predicts finite scores
        (in eval mode, on this step's images), and stop; a diverged state never replaces last.pt."""
        where = f"loss is {loss_value} at iteration {self.iteration + 1}; stopped"
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            if self._good is not None:  # the weights before the step that led here
                for dst, src in zip(self._state_tensors(), self._good):
                    dst.copy_(src)
                self.iteration = self._good_iteration
                self.scheduler.last_epoch = self.iteration
                for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
                    group["lr"] = lr
            else:  # the first step: the weights are untouched, only the statistics moved
                own = dict(self.model.named_buffers())
                for k, b in buffers.items():
                    own[k].copy_(b)
        if not self._predicts_finite(images):
            self._stop_diverged(f"{where}; the state before it already diverged (its predictions are not finite)")
        try:
            path = self.save(self.output / "last.pt")
        except ValueError as err:  # not finite either: keep whatever good file there is
            raise NonFiniteLossError(f"{where}; the last state is not finite either, {err}") from None
        raise NonFiniteLossError(f"{where}, last good state (iteration {self.iteration}) saved to {path}")

    def _check_diverged(self, iteration: int) -> None:
        """Before last.pt is overwritten: stop (NonFiniteLossError) where the loss is still finite but the
        state has diverged: statistics or weights not finite, or eval-mode predictions not finite. Every
        process takes part, so all stop together."""
        bad = non_finite_keys(self.model.state_dict())
        finite = not bad and (self._last_images is None or self._predicts_finite(self._last_images))
        if all_reduce_sum(torch.tensor(float(not finite), device=self.dist.device), self.dist).item() > 0:
            what = f"{bad[0]} holds NaN or infinity" if bad else "the model's predictions are not finite"
            self._stop_diverged(f"{what} at iteration {iteration}; stopped")

    def _stop_diverged(self, what: str) -> NoReturn:
        """Stop without touching last.pt, saying which iteration it keeps."""
        last = self.output / "last.pt"
        kept = "is unchanged" if last.exists() else "was never written"
        raise NonFiniteLossError(f"{what}, so {last} {kept}: lower train.lr")

    def _predicts_finite(self, images: torch.Tensor) -> bool:
        """Whether the model, as predict will run it (eval mode), gives finite logits on ``images``."""
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                return bool(torch.isfinite(self.model(images.to(self.dist.device))).all())
        finally:
            self.train_mode()

    def validate(self) -> dict[str, Any]:
        """Scores over the validation set (``metrics.scores``: miou, per_class_iou, ...), split across
        processes, and ``panels``: a few validation images as photo | truth | prediction (main
        process only). The model is left in train mode. Runs on the training device, on the model
        itself (no copy, no batch-norm folding)."""
        seg = Segmenter(self.model, optimize=False, device=self.dist.device)  # puts the model in eval mode
        shard = range(self.dist.rank, len(self.val_set), self.dist.world_size)
        with torch.no_grad():
            cm, _ = accumulate(seg, self.val_set, shard, trimap_widths=None)
            panels = [self._panel(seg, k) for k in range(min(PANELS, len(self.val_set)))] if self.dist.is_main else []
        matrix = all_reduce_sum(torch.as_tensor(cm.matrix, device=self.dist.device), self.dist)
        self.train_mode()
        return {**scores(matrix.cpu().numpy()), "panels": panels}

    def _panel(self, seg: Segmenter, index: int) -> np.ndarray:
        """Validation image ``index`` as photo | truth | prediction, the labels in the data set's colours."""
        image, mask = self.val_set[index]
        colours = np.zeros((256, 3), np.uint8)
        colours[: len(self.val_set.palette)] = np.asarray(self.val_set.palette, np.uint8)
        return np.concatenate([image, colours[np.asarray(mask)], colours[seg(image, probs=False).labels]], axis=1)

    def fit(self) -> TrainResult:
        """Train from self.iteration to config.train.iterations; checkpoints, validation, logs, plots."""
        t = self.cfg.train
        self.output.mkdir(parents=True, exist_ok=True)
        log = RunLog(self.output, self.iteration, self.dist.is_main, t.tensorboard, self.on_checkpoint)
        self.train_mode()
        bar = tqdm(
            total=t.iterations,
            initial=self.iteration,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=not (self.progress and self.dist.is_main),
        )
        batches, losses, loss = iter(self.loader()), [], float("nan")
        try:
            while self.iteration < t.iterations:
                seed_all(mix_seed(t.seed, 3, self.iteration, self.dist.rank))
                lr = self.optimizer.param_groups[0]["lr"]  # this iteration's (body) learning rate
                loss = self.step([_checked(next(batches)) for _ in range(t.accumulate)])
                losses.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                self._periodic(log, losses, lr)
        finally:
            bar.close()
            log.close()
        return TrainResult(t.iterations, self.output / "last.pt", self._best_path(), self.best_miou, loss)

    def _periodic(self, log: RunLog, losses: list[float], lr: float) -> None:
        """Logging, validation and checkpoints due at the current iteration."""
        t, it = self.cfg.train, self.iteration
        end = it == t.iterations
        row: dict[str, Any] = {}
        if it % t.log_every == 0 or end:
            row.update(loss=float(np.mean(losses)), lr=lr)
            losses.clear()
        if self.val_set is not None and (it % t.val_every == 0 or end):
            result = self.validate()
            miou = row["val_miou"] = result["miou"]
            log.validation(it, dict(zip(self.val_set.classes, result["per_class_iou"])), result["panels"])
            if self.best_miou is None or miou > self.best_miou:
                self.best_miou = miou
                self.save(self.output / "best.pt", resumable=False)
        if row:
            log.write(it, row)
        if it % t.checkpoint_every == 0 or end:
            self._check_diverged(it)
            self.save(self.output / "last.pt")
            log.plot()
        barrier(self.dist)

    def _best_path(self) -> Path | None:
        return self.output / "best.pt" if self.best_miou is not None else None


def run_training(
    config: Config,
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[Path], Any] | None = None,
) -> TrainResult:
    """Train per `config` in this process (one of torchrun's when launched by it); resume="auto"
    continues from OUTPUT/last.pt."""
    dist = init_distributed(device)
    try:
        trainer = Trainer.from_config(config, dist=dist, progress=progress, on_checkpoint=on_checkpoint)
        if resume:
            trainer.resume(Path(config.output) / "last.pt" if resume == "auto" else resume)
        return trainer.fit()
    finally:
        cleanup()


def build_model_for(config: Config, num_classes: int) -> DeepLab:
    """The model a config's ``model`` section describes, with ``num_classes`` outputs."""
    m = config.model
    kwargs = {k: getattr(m, k) for k in ("output_stride", "multi_grid", "atrous_rates") if getattr(m, k) is not None}
    if m.aux:
        kwargs["aux"] = True
    if m.arch is None:  # the architecture (and weights) of the checkpoint to fine-tune
        if not config.train.init_weights:
            raise ValueError("model.arch is null: give train.init_weights, whose architecture is then used")
        model = load_model(config.train.init_weights, num_classes=num_classes, **kwargs, **m.options)
        log.info(f"{config.train.init_weights}: model and weights of a {model.meta.arch}")
        return model
    model = build_model(m.arch, num_classes=num_classes, **kwargs, **m.options)
    if config.train.backbone_weights:  # ImageNet, or the backbone of any checkpoint load_model reads
        log.info(load_backbone_weights(model, config.train.backbone_weights))
    return model


def _resume_weights(model: nn.Module, path: str | Path) -> dict:
    """Load the weights of a checkpoint written by `save` into ``model`` (strictly); returns the checkpoint."""
    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: weights do not fit this config's model ({str(e).splitlines()[0]})") from None
    return ckpt


def _checked(batch: Any) -> Any:
    """A collated batch, or the one-line error of the sample that failed to load (in any worker)."""
    if isinstance(batch, SampleFailure):
        raise DatasetError(batch.message)
    return batch
