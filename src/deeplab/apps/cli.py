"""The `deeplab` command: thin sub-commands over the library."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from deeplab.apps.demo import run_demo
from deeplab.apps.evaluate import format_result, read_result, run_evaluation, same_checkpoint, write_report
from deeplab.apps.options import (
    OUT_DIR,
    POSITIVE,
    device_option,
    naming,
    one_line_errors,
    output_file_option,
    segmenter_from_options,
    segmenter_options,
    threads_option,
    weights_option,
    writable_path,
)
from deeplab.apps.plots import plot_training_curves, plot_trimap
from deeplab.apps.predict import predict_files
from deeplab.apps.refine import refine_file
from deeplab.apps.viz import classes_and_palette
from deeplab.crf import DenseCRF
from deeplab.data import DATASETS
from deeplab.devices import keep_freed_memory
from deeplab.distributed import cleanup, init_distributed, launched_by_torchrun
from deeplab.imageio import IMAGE_SUFFIXES, list_images, read_image
from deeplab.inference.onnx import OPSET_RANGE
from deeplab.models import (
    DEFAULT_WEIGHTS,
    NAMED_WEIGHTS,
    describe_checkpoint,
    load_model,
    named_weights_table,
    save_model,
)
from deeplab.models.presets import presets_table
from deeplab.train import NonFiniteLossError, run_training
from deeplab.train.config import load_config
from deeplab.train.timing import time_iterations


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deeplab")
def main() -> None:
    """DeepLab semantic segmentation: predict, train, evaluate, CRF, export."""
    _show_library_messages()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: files being written are finished or removed, never half."""
    raise SystemExit(128 + signum)


def _show_library_messages() -> None:
    """The library's info messages (a model converted once for OpenVINO) and warnings on stderr, a
    line each."""
    warnings.formatwarning = _one_line_warning
    log = logging.getLogger("deeplab")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
        log.setLevel(logging.INFO)


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    return f"deeplab: warning: {message}\n"


class _EchoHandler(logging.Handler):
    """Log records as "deeplab: message" lines on the stderr of the moment (click may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"deeplab: {record.getMessage()}", err=True)


@main.command()
@weights_option(shipped_default=True)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "outdir", required=True, type=OUT_DIR, callback=writable_path, help="Output folder.")
@segmenter_options
@click.option("--save-probs", is_flag=True, help="Also write NAME_probs.npy (CxHxW float32).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay colour weight.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Image-decoding workers.")
def predict(weights, inputs, outdir, segmenter, save_probs, alpha, batch_size, workers) -> None:
    """Segment images (files, folders, globs): label PNGs, overlays with legends, probabilities."""
    if weights is None:
        weights = DEFAULT_WEIGHTS
        click.echo(f"deeplab: no --weights: the shipped {weights} ({NAMED_WEIGHTS[weights].description})", err=True)
    paths = []
    for item in inputs:
        found = _outside(_listed(item), Path(outdir))  # never our own outputs of an earlier run
        if not found:
            raise click.ClickException(f"{item}: no images found (it reads {', '.join(IMAGE_SUFFIXES)})")
        paths += found
    keep_freed_memory()
    dist = init_distributed(segmenter["device"]) if launched_by_torchrun() else None
    if dist is not None:  # torchrun: every process segments its share, each file is written once
        segmenter["device"] = str(dist.device)
    shard = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    with one_line_errors():
        try:
            if dist is not None:
                same_checkpoint(weights, dist)  # one model's outputs, never a mix of two
            with naming(weights):
                model = load_model(weights)
                classes, palette = classes_and_palette(model.meta)
            seg = segmenter_from_options(model, **segmenter)
            result = predict_files(
                seg,
                paths,
                outdir,
                classes,
                palette,
                save_probs,
                alpha,
                shard=shard,
                batch_size=batch_size,
                workers=workers,
            )
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
    with one_line_errors():
        return list_images([item])


@main.command("export")
@weights_option()
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--opset", type=click.IntRange(*OPSET_RANGE), default=17, show_default=True)
@click.argument("output", type=click.Path(dir_okay=False), callback=writable_path)
def export_cmd(weights, fmt, opset, output) -> None:
    """Export a checkpoint to ONNX (input "image" N,3,H,W normalised; dynamic height/width)."""
    from deeplab.inference.onnx import export_onnx

    with one_line_errors():
        with naming(weights):
            model = load_model(weights)
        export_onnx(model, output, opset=opset)
    click.echo(f"wrote {output} ({fmt}, opset {opset})")


@main.command("train")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML recipe (configs/*.yaml); built-in defaults when omitted.",
)
@click.argument("overrides", nargs=-1)
@click.option("--output", type=OUT_DIR, callback=writable_path, help="Output folder (overrides the config's `output`).")
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
@device_option
@threads_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(
    config_path, overrides, output, resume, resume_from, backbone_weights, benchmark_iterations, device, quiet
) -> None:
    """Train a DeepLab: `deeplab train --config C.yaml train.iterations=100 ...` (torchrun for DDP).

    OVERRIDES are `key=value` pairs with dotted keys, e.g. train.lr=0.01 data.crop_size=321.
    """

    with one_line_errors(NonFiniteLossError):
        cfg = load_config(config_path, overrides)
        if config_path is None and cfg.data.root and not Path(cfg.data.root).is_dir():
            raise click.UsageError(
                f"no --config, and the built-in recipe's data ({cfg.data.dataset} at {cfg.data.root}) is not here: "
                "try --config configs/shapes.yaml (generated data, nothing to download)"
            )
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
    if launched_by_torchrun() and int(os.environ["RANK"]) != 0:
        return  # under torchrun, one summary (rank 0's) is enough
    best = (
        f", best val mIoU {100 * result.best_miou:.2f}% ({result.best_checkpoint})"
        if result.best_miou is not None
        else ""
    )
    click.echo(f"trained {result.iterations} iterations -> {result.last_checkpoint}{best}")


@main.command("evaluate")
@weights_option(required=False, help="Checkpoint to evaluate (any layout load_model reads).")
@click.option("--dataset", type=click.Choice(list(DATASETS)), help="The data set to score on.")
@click.option("--root", help="Data set folder (not needed for shapes).")
@click.option("--split", default="val", show_default=True)
@segmenter_options
@click.option("--max-images", type=click.IntRange(1), help="Evaluate the first N images only.")
@click.option("--trimap/--no-trimap", default=True, show_default=True, help="Measure accuracy near boundaries.")
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Image-decoding workers.")
@click.option("--label", help="Name of this run in plots (default: from the settings).")
@click.option("-o", "--output", "outdir", default="evaluation", show_default=True, type=OUT_DIR, callback=writable_path)
@click.option("--compare", is_flag=True, help="Plot the trimap curves of RESULTS (JSONs) and this run together.")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
def evaluate_cmd(
    weights, dataset, root, split, segmenter, max_images, trimap, batch_size, workers, label, outdir, compare, results
) -> None:
    """Score a checkpoint on a data set (mIoU, per-class IoU, accuracies, trimap): JSON + plots.

    `deeplab evaluate --compare a.json b.json` only plots earlier results together.
    """

    if results and not compare:
        raise click.UsageError("result JSONs are only read with --compare")
    if not weights and not (compare and results):
        raise click.UsageError("give --weights and --dataset, or --compare with result JSONs")
    if weights and not dataset:
        raise click.UsageError("--weights needs --dataset")
    dist = init_distributed(segmenter["device"]) if launched_by_torchrun() else None  # torchrun: shard the images
    main_process = dist is None or dist.is_main
    with one_line_errors():
        try:
            runs = [read_result(p) for p in results]
            if weights:
                keep_freed_memory()
                result = run_evaluation(
                    weights,
                    dataset,
                    root,
                    split,
                    segmenter=segmenter,
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
        finally:
            cleanup()


@main.command("quantize")
@weights_option()
@click.option("--calibration", required=True, help="Representative photos: a folder, files or a glob.")
@output_file_option("OUT.pt or .safetensors.")
@click.option("--max-images", type=click.IntRange(1), default=64, show_default=True, help="Calibration images used.")
def quantize_command(weights, calibration, output, max_images) -> None:
    """Calibrate 8-bit inference (NNCF, OpenVINO) on photos; OUTPUT runs with --precision int8."""
    from deeplab.inference.int8 import MIN_IMAGES, quantize

    if Path(output).suffix not in (".pt", ".pth", ".safetensors"):
        raise click.BadParameter(f"{output}: write .pt, .pth or .safetensors", param_hint="OUTPUT")
    with one_line_errors():
        with naming(weights):
            model = load_model(weights)
        paths = list_images([calibration])[:max_images]
        images = []
        for path in paths:
            try:
                images.append(read_image(path))
            except ValueError as err:  # named and skipped
                click.echo(f"deeplab: skipping {err}", err=True)
        if len(images) < MIN_IMAGES:
            raise ValueError(
                f"{calibration}: {len(images)} readable image(s) of {len(paths)}; int8 calibration needs {MIN_IMAGES} or more"
            )
        model.meta.int8 = quantize(model, images)
        save_model(output, model)
    click.echo(f"wrote {output} (int8 calibrated on {len(images)} images): run it with --precision int8")


@main.command("serve")
@weights_option(shipped_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Processes, each with its model.")
@segmenter_options
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True, help="Images per network batch.")
@click.option("--max-wait-ms", type=click.FloatRange(0), default=10, show_default=True, help="Wait to fill a batch.")
@click.option("--max-queue", type=click.IntRange(1), default=64, show_default=True, help="Requests waiting; then 503.")
@click.option("--max-upload-mb", type=POSITIVE, default=20, show_default=True, help="Largest upload accepted.")
def serve_command(weights, host, port, workers, segmenter, max_batch, max_wait_ms, max_queue, max_upload_mb) -> None:
    """Serve segmentation over HTTP: POST /v1/segment, a web page at /, /metrics, /healthz, /readyz."""
    try:
        import uvicorn

        from deeplab.apps.serve import SETTINGS_ENV, ServeSettings
    except ImportError as err:
        raise click.ClickException(f"deeplab serve needs the extra: pip install 'deeplab[serve]' ({err.name} missing)")
    settings = ServeSettings(weights or DEFAULT_WEIGHTS, segmenter, max_batch, max_wait_ms, max_queue, max_upload_mb)
    with one_line_errors(), naming(settings.weights):
        load_model(settings.weights)  # a bad checkpoint fails here, in one line, before any worker starts
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    click.echo(f"deeplab: serving {settings.weights} on http://{host}:{port}/ ({workers} worker(s))", err=True)
    uvicorn.run(
        "deeplab.apps.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=10,
        log_level="warning",
    )


@main.group("data")
def data_group() -> None:
    """Look at a data set before training on it."""


@data_group.command("check")
@click.option("--dataset", type=click.Choice(list(DATASETS)), required=True, help="The data set's layout.")
@click.option("--root", help="Its folder.")
@click.option("--split", default="all", show_default=True, help="The split to check (folder: all = every image).")
@click.option("--palette", help="Masks in a known data set's colours: voc, cityscapes or ade20k (folder data sets).")
@click.option("-o", "--output", default="data-check", show_default=True, type=OUT_DIR, callback=writable_path)
def data_check_command(dataset, root, split, palette, output) -> None:
    """Decode every image and mask, list every problem, count the classes; exit 1 if training would fail."""
    from deeplab.apps.datacheck import check_dataset, format_report, plot_frequencies

    with one_line_errors():
        report = check_dataset(dataset, root, split, **({"palette": palette} if palette else {}))
        click.echo(format_report(report))
        click.echo(f"wrote {plot_frequencies(report, Path(output) / 'class_frequencies.png')}")
    if report.problems:
        raise SystemExit(1)


@main.command("models")
@click.option("--size", default=513, show_default=True, help="Input side for the GFLOPs column.")
def models_command(size: int) -> None:
    """List the model presets (parameters, GFLOPs counted analytically) and the shipped weights."""

    click.echo(presets_table(size))
    click.echo("\nshipped weights (--weights NAME, deeplab.load_model(NAME)):")
    click.echo(named_weights_table())


@main.command("info")
@click.argument("checkpoint")
def info_command(checkpoint: str) -> None:
    """Show what a checkpoint holds: arch, config, classes, normalisation, extra keys."""

    with one_line_errors():
        click.echo(describe_checkpoint(checkpoint))


@main.command("convert")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False), callback=writable_path)
@click.option(
    "--output-stride",
    type=click.Choice(["8", "16", "32"]),
    help="The stride the source was trained at, where its file cannot tell (e.g. VainF's OS8 models).",
)
def convert_command(source: str, target: str, output_stride: str | None) -> None:
    """Write any checkpoint deeplab can load as ours: TARGET.pt (torch.save) or TARGET.safetensors (no pickle)."""
    if Path(target).suffix not in (".pt", ".pth", ".safetensors"):
        raise click.BadParameter(
            f"{target}: write .pt, .pth or .safetensors (deeplab export writes .onnx)", param_hint="TARGET"
        )
    with one_line_errors():
        with naming(source):
            model = load_model(source, **({"output_stride": int(output_stride)} if output_stride else {}))
        save_model(target, model)
    click.echo(f"wrote {target} ({model.meta.arch}, {model.meta.config['num_classes']} classes)")


@main.command("crf")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("probs", type=click.Path(dir_okay=False))
@output_file_option("Label PNG to write.")
@click.option("--logits", is_flag=True, help="PROBS holds logits (softmax taken first).")
@click.option("--w1", type=float, default=4.0, show_default=True, help="Bilateral kernel weight.")
@click.option("--theta-alpha", type=POSITIVE, default=67.0, show_default=True, help="Bilateral position scale (px).")
@click.option("--theta-beta", type=POSITIVE, default=3.0, show_default=True, help="Bilateral colour scale.")
@click.option("--w2", type=float, default=3.0, show_default=True, help="Gaussian (smoothness) kernel weight.")
@click.option("--theta-gamma", type=POSITIVE, default=1.0, show_default=True, help="Gaussian position scale (px).")
@click.option("--iterations", type=click.IntRange(1), default=10, show_default=True, help="Mean-field iterations.")
@threads_option
def crf_command(image, probs, output, logits, w1, theta_alpha, theta_beta, w2, theta_gamma, iterations) -> None:
    """Refine another model's probabilities (PROBS.npy, C x H x W) on IMAGE with the dense CRF."""

    try:
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
@weights_option(required=False, help="Checkpoint (default: the shipped model).")
@device_option
def demo_command(output: str, num_images: int, weights: str | None, device: str | None) -> None:
    """Segment held-out built-in scenes three ways and write an HTML report."""
    with one_line_errors(OSError):
        run_demo(output, num_images=num_images, weights=weights, echo=click.echo, device=device)
