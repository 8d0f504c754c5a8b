"""The `deeplab` command: thin sub-commands over the library."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import click
import numba
import numpy as np
import torch

from deeplab.apps.demo import run_demo
from deeplab.apps.evaluate import format_result, read_result, run_evaluation, write_report
from deeplab.apps.plots import plot_training_curves, plot_trimap
from deeplab.apps.predict import predict_files
from deeplab.apps.refine import refine_file
from deeplab.apps.viz import classes_and_palette
from deeplab.checkpoint import CheckpointError
from deeplab.crf import DenseCRF
from deeplab.devices import keep_freed_memory, resolve_device
from deeplab.distributed import cleanup, init_distributed, launched_by_torchrun
from deeplab.imageio import list_images
from deeplab.inference import PRESETS, Segmenter
from deeplab.models import describe_checkpoint, load_model, save_model
from deeplab.models.presets import presets_table
from deeplab.train import NonFiniteLossError, run_training
from deeplab.train.config import load_config
from deeplab.train.timing import time_iterations


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deeplab")
def main() -> None:
    """DeepLab semantic segmentation: predict, train, evaluate, CRF, export."""
    _show_library_messages()


def _show_library_messages() -> None:
    """The library's info messages (a model converted once for OpenVINO) on stderr."""
    log = logging.getLogger("deeplab")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
        log.setLevel(logging.INFO)


class _EchoHandler(logging.Handler):
    """Log records as "deeplab: message" lines on the stderr of the moment (click may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"deeplab: {record.getMessage()}", err=True)


OUT_DIR = click.Path(file_okay=False)
POSITIVE = click.FloatRange(0, min_open=True)
OPSET_MIN, OPSET_MAX = 9, 20  # what torch's TorchScript ONNX exporter writes


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
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


def _writable_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
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


DEVICE = click.option(
    "--device", callback=_device, help="cpu, cuda, cuda:N or mps (default: the first GPU when there is one)."
)
PRECISION = click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="bf16: GPUs and CPUs with AVX512-BF16/AMX; fp16: GPUs.",
)
BACKEND = click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]),
    default="auto",
    show_default=True,
    help="auto: OpenVINO (fastest on CPUs; pip install 'deeplab[openvino]') for fp32 on the CPU where "
    "installed, else torch. A model's first OpenVINO run converts it (seconds), later runs read the cache.",
)


@main.command()
@click.option(
    "--weights",
    required=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint: ours (.pt, .safetensors) or a peer's (see deeplab info), .caffemodel.",
)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "outdir", required=True, type=OUT_DIR, callback=_writable_path, help="Output folder.")
@click.option(
    "--preset",
    type=click.Choice(["deeplabv2", "deeplabv3"]),
    help="A paper's strategy: v2 = max over scales 1,.75,.5; v3 = mean over .5..1.75 + flip.",
)
@click.option("--scales", help="Comma-separated scales, e.g. 0.5,0.75,1 (default 1).")
@click.option("--fusion", type=click.Choice(["mean", "max"]), help="Fuse mean probabilities or max logits.")
@click.option("--flip/--no-flip", default=None, help="Average with the left-right flipped image.")
@click.option("--tile", help="Sliding window H,W (or one number); automatic for large images.")
@click.option(
    "--overlap", type=click.FloatRange(0, 1, max_open=True), default=1 / 3, show_default="1/3", help="Window overlap."
)
@click.option("--crf", is_flag=True, help="Refine with the fully connected CRF.")
@PRECISION
@DEVICE
@BACKEND
@click.option("--save-probs", is_flag=True, help="Also write NAME_probs.npy (CxHxW float32).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay colour weight.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads (default: torch's choice).")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Image-decoding processes.")
def predict(
    weights,
    inputs,
    outdir,
    preset,
    scales,
    fusion,
    flip,
    tile,
    overlap,
    crf,
    precision,
    device,
    backend,
    save_probs,
    alpha,
    threads,
    batch_size,
    workers,
) -> None:
    """Segment images (files, folders, globs): label PNGs, overlays with legends, probabilities."""
    paths = []
    for item in inputs:
        found = _outside(_listed(item), Path(outdir))  # never our own outputs of an earlier run
        if not found:
            raise click.ClickException(f"{item}: no images found")
        paths += found
    options = dict(PRESETS[preset]) if preset else {}
    given = {"scales": _floats(scales, "--scales"), "fusion": fusion, "flip": flip}
    options.update({k: v for k, v in given.items() if v is not None})
    tile_size = _floats(tile, "--tile")
    if tile_size is not None and len(tile_size) not in (1, 2):
        raise click.BadParameter("expected H,W or one number", param_hint="--tile")
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
    dist = init_distributed(device) if launched_by_torchrun() else None
    if dist is not None:  # torchrun: every process segments its share, each file is written once
        device = str(dist.device)
    shard = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    try:
        model = load_model(weights)
        classes, palette = classes_and_palette(model.meta)
    except ValueError as err:
        raise click.ClickException(str(err) if str(weights) in str(err) else f"{weights}: {err}")
    try:
        refine = None
        if crf:
            refine = DenseCRF()
        seg = Segmenter(
            model,
            tile=tuple(int(t) for t in tile_size * 2)[-2:] if tile_size else None,
            overlap=overlap,
            crf=refine,
            precision=precision,
            backend=backend,
            device=device,
            **options,
        )
        result = predict_files(
            seg, paths, outdir, classes, palette, save_probs, alpha, shard=shard, batch_size=batch_size, workers=workers
        )
    except ValueError as err:
        raise click.ClickException(str(err))
    finally:
        cleanup()
    rate = len(result.done) / result.seconds if result.seconds else 0.0
    who = f"rank {dist.rank}: " if dist is not None else ""
    click.echo(
        f"{who}{len(result.done)} of {len(paths[shard[0] :: shard[1]])} images segmented in {result.seconds:.1f} s ({rate:.2f} img/s) -> {outdir}"
    )
    if result.failed:
        click.echo(f"{len(result.failed)} failed:", err=True)
        for _path, message in result.failed:
            click.echo(f"  {message}", err=True)
        raise SystemExit(1)


def _outside(paths: list[Path], folder: Path) -> list[Path]:
    """The paths that do not lie inside ``folder``."""
    root = folder.resolve()
    return [p for p in paths if not p.resolve().is_relative_to(root)]


def _listed(item: str) -> list:
    """The images a file, folder or glob names (a one-line error where it names nothing)."""

    try:
        return list_images([item])
    except ValueError as err:
        raise click.ClickException(str(err))


@main.command("export")
@click.option(
    "--weights",
    required=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint: ours (.pt, .safetensors) or a peer's (see deeplab info), .caffemodel.",
)
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--opset", type=click.IntRange(OPSET_MIN, OPSET_MAX), default=17, show_default=True)
@click.argument("output", type=click.Path(dir_okay=False), callback=_writable_path)
def export_cmd(weights, fmt, opset, output) -> None:
    """Export a checkpoint to ONNX (input "image" N,3,H,W normalised; dynamic height/width)."""
    from deeplab.inference.onnx import export_onnx

    try:
        export_onnx(load_model(weights), output, opset=opset)
    except ValueError as err:
        raise click.ClickException(str(err))
    click.echo(f"wrote {output} ({fmt}, opset {opset})")


@main.command("train")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML recipe (configs/*.yaml); built-in defaults when omitted.",
)
@click.argument("overrides", nargs=-1)
@click.option(
    "--output", type=OUT_DIR, callback=_writable_path, help="Output folder (overrides the config's `output`)."
)
@click.option("--resume", is_flag=True, help="Continue exactly where OUTPUT/last.pt stopped.")
@click.option("--resume-from", type=click.Path(dir_okay=False), help="Continue from this checkpoint.")
@click.option(
    "--backbone-weights",
    type=click.Path(dir_okay=False),
    help="torchvision ImageNet ResNet checkpoint to start the backbone from.",
)
@click.option(
    "--benchmark-iterations",
    type=click.IntRange(1),
    help="Only time N iterations on synthetic data of the recipe's crop size and batch.",
)
@click.option("--device", callback=_device, help="cpu or cuda[:N] (default: cuda:LOCAL_RANK where present, else cpu).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(
    config_path, overrides, output, resume, resume_from, backbone_weights, benchmark_iterations, device, quiet
) -> None:
    """Train a DeepLab: `deeplab train --config C.yaml train.iterations=100 ...` (torchrun for DDP).

    OVERRIDES are `key=value` pairs with dotted keys, e.g. train.lr=0.01 data.crop_size=321.
    """

    try:
        cfg = load_config(config_path, overrides)
        cfg.output = output or cfg.output
        cfg.train.backbone_weights = backbone_weights or cfg.train.backbone_weights
        if benchmark_iterations is not None:
            r = time_iterations(cfg, benchmark_iterations, init_distributed(device))
            click.echo(
                f"{r['arch']}: {r['seconds_per_iteration']:.2f} s/iteration at batch "
                f"{r['batch_size']}, crop {r['crop_size']} (median of {r['iterations']}, "
                f"after a {r['warmup_seconds']:.2f} s warm-up)"
            )
            return
        result = run_training(
            cfg,
            resume_from or ("auto" if resume else None),
            device,
            progress=not quiet,
            on_checkpoint=lambda log_csv: plot_training_curves(log_csv, log_csv.parent),
        )
    except (ValueError, NonFiniteLossError, FileNotFoundError) as err:
        raise click.ClickException(str(err).splitlines()[0] if str(err) else repr(err))
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, one summary (rank 0's) is enough
    best = (
        f", best val mIoU {100 * result.best_miou:.2f}% ({result.best_checkpoint})"
        if result.best_miou is not None
        else ""
    )
    click.echo(f"trained {result.iterations} iterations -> {result.last_checkpoint}{best}")


@main.command("evaluate")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint to evaluate.")
@click.option("--dataset", help="voc, voc_aug, cityscapes, ade20k, folder or shapes.")
@click.option("--root", help="Data set folder (not needed for shapes).")
@click.option("--split", default="val", show_default=True)
@click.option("--scales", help="Comma-separated scales, e.g. 0.5,0.75,1 (default 1).")
@click.option("--fusion", type=click.Choice(["mean", "max"]), default="mean", show_default=True)
@click.option("--flip", is_flag=True, help="Average with the left-right flipped image.")
@click.option("--crf", is_flag=True, help="Refine with the fully connected CRF.")
@PRECISION
@DEVICE
@BACKEND
@click.option("--max-images", type=click.IntRange(1), help="Evaluate the first N images only.")
@click.option("--trimap/--no-trimap", default=True, show_default=True, help="Measure accuracy near boundaries.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Image-decoding processes.")
@click.option("--label", help="Name of this run in plots (default: from the settings).")
@click.option(
    "-o", "--output", "outdir", default="evaluation", show_default=True, type=OUT_DIR, callback=_writable_path
)
@click.option("--compare", is_flag=True, help="Plot the trimap curves of RESULTS (JSONs) and this run together.")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
def evaluate_cmd(
    weights,
    dataset,
    root,
    split,
    scales,
    fusion,
    flip,
    crf,
    precision,
    device,
    backend,
    max_images,
    trimap,
    batch_size,
    workers,
    label,
    outdir,
    compare,
    results,
) -> None:
    """Score a checkpoint on a data set (mIoU, per-class IoU, accuracies, trimap): JSON + plots.

    `deeplab evaluate --compare a.json b.json` only plots earlier results together.
    """

    if results and not compare:
        raise click.UsageError("result JSONs are only read with --compare")
    if not weights and not (compare and results):
        raise click.UsageError("give --weights and --dataset, or --compare with result JSONs")
    dist = init_distributed(device) if launched_by_torchrun() else None  # torchrun: shard the images
    main_process = dist is None or dist.is_main
    try:
        runs = [read_result(p) for p in results]
        if weights:
            if not dataset:
                raise click.UsageError("--weights needs --dataset")
            keep_freed_memory()
            result = run_evaluation(
                weights,
                dataset,
                root,
                split,
                scales=_floats(scales, "--scales") or (1.0,),
                fusion=fusion,
                flip=flip,
                crf=crf,
                precision=precision,
                device=device,
                backend=backend,
                max_images=max_images,
                trimap=trimap,
                label=label,
                dist=dist,
                batch_size=batch_size,
                workers=workers,
            )
            if main_process:
                click.echo(format_result(result))
                for path in write_report(result, outdir):
                    click.echo(f"wrote {path}")
            runs.append(result)
        if compare and main_process:
            click.echo(f"wrote {plot_trimap(runs, Path(outdir) / 'trimap_compare.png')}")
    except ValueError as err:
        raise click.ClickException(str(err))
    finally:
        cleanup()


@main.command("models")
@click.option("--size", default=513, show_default=True, help="Input side for the GFLOPs column.")
def models_command(size: int) -> None:
    """List the model presets with parameters and GFLOPs (counted analytically)."""

    click.echo(presets_table(size))


@main.command("info")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
def info_command(checkpoint: str) -> None:
    """Show what a checkpoint holds: arch, config, classes, normalisation, extra keys."""

    try:
        click.echo(describe_checkpoint(checkpoint))
    except ValueError as err:
        raise click.ClickException(str(err))


@main.command("convert")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False), callback=_writable_path)
@click.option(
    "--output-stride",
    type=click.Choice(["8", "16", "32"]),
    help="The stride the source was trained at, where its file cannot tell (e.g. VainF's OS8 models).",
)
def convert_command(source: str, target: str, output_stride: str | None) -> None:
    """Write any checkpoint deeplab can load as ours: TARGET.pt (torch.save) or TARGET.safetensors (no pickle)."""
    try:
        model = load_model(source, **({"output_stride": int(output_stride)} if output_stride else {}))
        save_model(target, model)
    except ValueError as err:
        raise click.ClickException(str(err))
    click.echo(f"wrote {target} ({model.meta.arch}, {model.meta.config['num_classes']} classes)")


@main.command("crf")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("probs", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    callback=_writable_path,
    help="Label PNG to write.",
)
@click.option("--logits", is_flag=True, help="PROBS holds logits (softmax taken first).")
@click.option("--w1", type=float, default=4.0, show_default=True, help="Bilateral kernel weight.")
@click.option("--theta-alpha", type=POSITIVE, default=67.0, show_default=True, help="Bilateral position scale (px).")
@click.option("--theta-beta", type=POSITIVE, default=3.0, show_default=True, help="Bilateral colour scale.")
@click.option("--w2", type=float, default=3.0, show_default=True, help="Gaussian (smoothness) kernel weight.")
@click.option("--theta-gamma", type=POSITIVE, default=1.0, show_default=True, help="Gaussian position scale (px).")
@click.option("--iterations", type=click.IntRange(1), default=10, show_default=True, help="Mean-field iterations.")
@click.option("--threads", type=click.IntRange(1), help="Threads (default: numba's, all cores).")
def crf_command(
    image, probs, output, logits, w1, theta_alpha, theta_beta, w2, theta_gamma, iterations, threads
) -> None:
    """Refine another model's probabilities (PROBS.npy, C x H x W) on IMAGE with the dense CRF."""

    try:
        if threads:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        crf = DenseCRF(w1, theta_alpha, theta_beta, w2, theta_gamma, iterations)
        labels = refine_file(image, probs, output, crf, from_logits=logits)
    except ValueError as err:
        raise click.ClickException(str(err).replace("`from_logits=True`", "--logits"))
    click.echo(f"wrote {output} ({labels.shape[1]}x{labels.shape[0]}, classes {np.unique(labels).tolist()})")


@main.command("demo")
@click.option(
    "-o",
    "--output",
    default="demo-output",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the HTML report and pictures.",
)
@click.option("--num-images", default=40, show_default=True, type=click.IntRange(1), help="Held-out scenes.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (default: the shipped model).")
@DEVICE
def demo_command(output: str, num_images: int, weights: str | None, device: str | None) -> None:
    """Segment held-out built-in scenes three ways and write an HTML report."""
    try:
        run_demo(output, num_images=num_images, weights=weights, echo=click.echo, device=device)
    except (CheckpointError, OSError) as err:
        raise click.ClickException(str(err)) from None
