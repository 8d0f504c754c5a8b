"""8-bit inference against TensorFlow Lite's own 8-bit execution of the same file, each in its own process.

The model: TensorFlow's DeepLab v3 MobileNetV2 (the shipped voc-mobilenetv2 .tflite). TFLite's
runtime (ai-edge-litert, XNNPACK) runs the file itself: 513x513 uint8 in, labels out (its graph
ends in an argmax). Ours: the float conversion on our default path (OpenVINO fp32) and the int8
graph `deeplab quantize` makes, calibrated on the shipped photos; both as `deeplab predict` runs
them: labels only (normalise, network, argmax in the graph), and with probabilities (softmax,
argmax; `--save-probs`). Photo: VOC val 23, 513x513. Prints the median time per image, the ratios,
labels equal to our fp32's, achieved GFLOP/s and the share of the CPU's fp32 and int8 peaks (int8:
4x fp32 with AVX512-VNNI/AVX-VNNI, 2x without); then how our paths scale with the image size
(257 ... 2049 px squares; TFLite's graph is fixed at 513) and the threads (1, 2), as a table and,
with --plot, a figure. Last, the same int8 path on deeplabv3-resnet101 in torchvision's layout
against our fp32 default (random weights with batch-norm statistics estimated on the calibration
photos: no trained ResNet-101 can be had offline, so its labels test the arithmetic, not a task).

    python benchmarks/bench_int8.py [--repeats 10] [--rounds 3] [--plot docs/int8-scaling.png]
                                    [--skip-scaling] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import cpu_info, cpu_summary, peak_gflops  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "src" / "deeplab" / "assets" / "photos"
CALIBRATION = ("voc-1.png", "voc-23.png", "voc-114.png", "bird.png", "dog.png")
SIZES = (257, 513, 1025, 2049)
NAMES = {
    "tflite": "TFLite runtime, 8-bit (its own file)",
    "fp32": "deeplab fp32 (OpenVINO), labels",
    "int8": "deeplab int8, labels",
    "fp32+probs": "deeplab fp32, labels + probabilities",
    "int8+probs": "deeplab int8, labels + probabilities",
}


def child(runtime: str, size: int, threads: int, repeats: int, weights: str, out: str) -> None:
    """Time one runtime in this process; write {"ms": [...], "gflop": ...} and the labels."""
    import torch
    from PIL import Image

    torch.set_num_threads(threads)
    rgb = np.asarray(Image.open(PHOTOS / "voc-23.png").convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    gflop = None
    if runtime == "tflite":
        from deeplab.apps.photos import TFLiteRuntime
        from deeplab.models.named import weights_path

        run = TFLiteRuntime(weights_path("voc-mobilenetv2"), threads=threads)
    else:
        from torch.utils.flop_counter import FlopCounterMode

        from deeplab import Segmenter, load_model

        model = load_model(weights)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        gflop = counter.get_total_flops() / 1e9
        segmenter = Segmenter(model, precision="int8" if runtime.startswith("int8") else "fp32")
        with_probs = runtime.endswith("+probs")  # as predict --save-probs; else labels only, as predict
        run = lambda rgb: segmenter(rgb, probs=with_probs)  # noqa: E731
    labels = run(rgb).labels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(rgb)
        times.append(1000 * (time.perf_counter() - start))
    np.save(out + ".npy", np.asarray(labels))
    Path(out + ".json").write_text(json.dumps({"ms": times, "gflop": gflop}))


def measure(runtime: str, size: int, threads: int, repeats: int, weights: str, tmp: Path) -> dict:
    out = str(tmp / f"{runtime}-{size}-{threads}")
    args = [
        sys.executable,
        __file__,
        "--child",
        runtime,
        str(size),
        str(threads),
        weights,
        out,
        "--repeats",
        str(repeats),
    ]
    subprocess.run(args, check=True, capture_output=True)
    result = json.loads(Path(out + ".json").read_text())
    return result | {"median": statistics.median(result["ms"]), "labels": np.load(out + ".npy")}


def quantized(weights: str, tmp: Path) -> str:
    """The int8 checkpoint of ``weights``, calibrated on the shipped photos (deeplab quantize)."""
    photos = tmp / "calibration"
    if not photos.is_dir():
        photos.mkdir()
        for name in CALIBRATION:
            shutil.copy(PHOTOS / name, photos / name)
    out = tmp / f"{Path(weights).stem}-int8.pt"
    command = ["-m", "deeplab", "quantize", "--weights", weights, "--calibration", str(photos), "-o", str(out)]
    subprocess.run([sys.executable, *command], check=True, capture_output=True)
    return str(out)


def resnet101(tmp: Path) -> str:
    """deeplabv3-resnet101 in torchvision's layout (its state dict file): random weights, batch-norm
    statistics estimated on the calibration photos so that the activations have a sane scale."""
    import torch
    from PIL import Image

    from deeplab.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3-resnet101", output_stride=8, atrous_rates=(12, 24, 36))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the photos
    model.train()
    mean, std = torch.tensor(model.meta.mean).view(3, 1, 1), torch.tensor(model.meta.std).view(3, 1, 1)
    rgbs = [np.array(Image.open(PHOTOS / name).convert("RGB").resize((321, 321))) for name in CALIBRATION]
    with torch.no_grad():  # one batch: the image-pooling branch's batch norm needs more than one value
        model(torch.stack([(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std for rgb in rgbs]))
    path = tmp / "tv_deeplabv3_resnet101.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the 513 table (noisy CPUs)")
    parser.add_argument("--skip-scaling", action="store_true", help="leave out the size and thread scaling")
    parser.add_argument("--plot", help="write the scaling figure here (PNG)")
    parser.add_argument("--skip-resnet", action="store_true", help="leave out the ResNet-101 part (minutes)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runtime, size, threads, weights, out = args.child
        child(runtime, int(size), int(threads), args.repeats, weights, out)
        return
    _, flags, _ = cpu_info()
    vnni = bool({"avx512_vnni", "avx_vnni"} & flags)
    print(
        cpu_summary()
        + (" avx512_vnni" if "avx512_vnni" in flags else "")
        + (" avx_vnni" if "avx_vnni" in flags else "")
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        weights = quantized("voc-mobilenetv2", tmp)
        print(
            f"\nDeepLab v3 MobileNetV2 (voc-mobilenetv2), VOC val 23 at 513x513, 2 threads, median of {args.repeats}"
            f" per round, {args.rounds} interleaved rounds: the median round and the range of the ratios"
        )
        rounds = [{r: measure(r, 513, 2, args.repeats, weights, tmp) for r in NAMES} for _ in range(args.rounds)]
        rows = {r: rounds[0][r] | {"median": statistics.median(x[r]["median"] for x in rounds)} for r in NAMES}
        reference, gflop = rows["fp32"]["labels"], rows["fp32"]["gflop"]
        peak = peak_gflops(2)
        header = f"{'runtime':<44} {'ms':>7} {'vs TFLite':>9} {'(range)':>13} {'labels = fp32':>13} {'GFLOP/s':>8}"
        print(header + f" {'of fp32 / int8 peak':>20}")
        for key, row in rows.items():
            speed = gflop / (row["median"] / 1000)
            share = f"{100 * speed / peak:.1f}% / {100 * speed / (peak * (4 if vnni else 2)):.1f}%"
            equal = 100 * (row["labels"] == reference).mean()
            ratio = rows["tflite"]["median"] / row["median"]
            ratios = [x["tflite"]["median"] / x[key]["median"] for x in rounds]
            span = f"{min(ratios):.2f}-{max(ratios):.2f}x"
            print(
                f"{NAMES[key]:<44} {row['median']:>7.1f} {ratio:>8.2f}x {span:>13} {equal:>12.2f}% {speed:>8.1f}", share
            )
        print(
            f"({gflop:.2f} GFLOP per 513x513 image, counted by torch's FlopCounterMode; fp32 peak {peak:.0f} GFLOP/s)"
        )

        table = {} if args.skip_scaling else scaling(weights, tmp, args.repeats)
        if not args.skip_resnet:
            resnet(tmp, peak, vnni)
    if args.plot and table:
        plot(table, rows["tflite"]["median"], args.plot)


def scaling(weights: str, tmp: Path, repeats: int) -> dict:
    """ms per image of our fp32 and int8 paths (labels only) by image side and threads."""
    print("\nscaling: ms per image, labels only (our paths; TFLite's graph is fixed at 513x513)")
    table = {}
    print(f"{'size':>6} {'threads':>7} {'fp32':>9} {'int8':>9} {'int8 speed-up':>13}")
    for size in SIZES:
        for threads in (1, 2):
            fp32 = measure("fp32", size, threads, max(3, repeats // (size // 257)), weights, tmp)["median"]
            int8 = measure("int8", size, threads, max(3, repeats // (size // 257)), weights, tmp)["median"]
            table[size, threads] = (fp32, int8)
            print(f"{size:>6} {threads:>7} {fp32:>9.1f} {int8:>9.1f} {fp32 / int8:>12.2f}x")
    return table


def resnet(tmp: Path, peak: float, vnni: bool) -> None:
    """The int8 path on deeplabv3-resnet101 (torchvision layout) against our fp32 default."""
    weights = quantized(resnet101(tmp), tmp)
    print("\ndeeplabv3-resnet101, torchvision layout (random weights, BN statistics from the 5 photos), 513x513,")
    print("2 threads, median of 3, labels only")
    rows = {r: measure(r, 513, 2, 3, weights, tmp) for r in ("fp32", "int8")}
    gflop = rows["fp32"]["gflop"]
    print(f"{'path':<28} {'ms':>8} {'speed-up':>8} {'labels = fp32':>13} {'GFLOP/s':>8} {'of fp32 / int8 peak':>20}")
    for key, row in rows.items():
        speed = gflop / (row["median"] / 1000)
        share = f"{100 * speed / peak:.1f}% / {100 * speed / (peak * (4 if vnni else 2)):.1f}%"
        equal = 100 * (row["labels"] == rows["fp32"]["labels"]).mean()
        ratio = rows["fp32"]["median"] / row["median"]
        name = "deeplab fp32 (default)" if key == "fp32" else "deeplab int8"
        print(f"{name:<28} {row['median']:>8.1f} {ratio:>7.2f}x {equal:>12.2f}% {speed:>8.1f} {share:>20}")
    print(f"({gflop:.1f} GFLOP per 513x513 image)")


def plot(table: dict, tflite_ms: float, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for threads, style in ((1, "--"), (2, "-")):
        for index, name in enumerate(("fp32", "int8")):
            ax.plot(
                SIZES,
                [table[s, threads][index] for s in SIZES],
                style,
                marker="o",
                label=f"deeplab {name}, {threads} thread(s)",
            )
    ax.plot([513], [tflite_ms], "k*", markersize=12, label="TFLite 8-bit, 2 threads (513 only)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(SIZES, [str(s) for s in SIZES])
    ax.set_xlabel("image side (px)")
    ax.set_ylabel("ms per image")
    ax.set_title("DeepLab v3 MobileNetV2: time per image")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
