"""Inference on CPU: our fast paths against torchvision's deeplabv3_resnet101 (eager fp32).

Same weights (torchvision random init with randomised BN statistics, converted into our model),
one 513x513 image, `--threads` threads. Prints median time, speed-up and label agreement with
torchvision, then the peak memory (ru_maxrss of a child process) of a large image tiled and untiled.

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


def our_model(tv_model: torch.nn.Module, workdir: Path) -> torch.nn.Module:
    """The same weights in our DeepLab, through the checkpoint conversion and deeplab.load_model."""
    import deeplab

    path = workdir / "tv_deeplabv3_resnet101.pth"
    torch.save(tv_model.state_dict(), path)
    return deeplab.load_model(path)


def interleaved_medians(runners: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds and last output of each runner, run round-robin (fair under shared load)."""
    outputs = {name: run() for name, run in runners.items()}  # warm-up, compilation
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def speed(threads: int, repeats: int, workdir: Path) -> list[tuple[str, float, float, float]]:
    """Rows (name, median seconds, speed-up over torchvision, label agreement with it)."""
    from deeplab.inference import Segmenter
    from tiny_model import tiny_image

    torch.set_num_threads(threads)
    image = tiny_image(SIZE, SIZE, seed=7)
    tv_model = torchvision_model()
    ours = our_model(tv_model, workdir)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    mean, std = torch.tensor(ours.meta.mean), torch.tensor(ours.meta.std)
    x = ((x - mean[:, None, None]) / std[:, None, None])[None]

    def reference():
        with torch.inference_mode():
            return tv_model(x)["out"][0].argmax(0).numpy()

    runners = {"torchvision eager fp32": reference}
    paths = {
        "ours eager fp32 (no folding)": dict(optimize=False),
        "ours fast fp32 (BN folded, channels_last)": dict(),
        "ours fast fp32 + torch.compile": dict(compile=True),
        "ours fast bf16 (autocast)": dict(precision="bf16"),
        "ours onnxruntime fp32": dict(backend="onnxruntime"),
    }
    for name, kwargs in paths.items():
        seg = Segmenter(ours, **kwargs)
        runners[name] = lambda seg=seg: seg(image).labels
    medians, labels = interleaved_medians(runners, repeats)
    base, ref = medians["torchvision eager fp32"], labels["torchvision eager fp32"]
    return [(name, medians[name], base / medians[name], float((labels[name] == ref).mean())) for name in runners]


def memory_child(height: int, width: int, tiled: bool, threads: int) -> None:
    """Child process: segment one height x width image; print peak RSS and output size (MiB)."""
    import deeplab
    from deeplab.inference import DEFAULT_TILE, Segmenter

    torch.set_num_threads(threads)
    model = deeplab.build_model("deeplabv3-mobilenetv2", num_classes=21).eval()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seg = Segmenter(model, tile=DEFAULT_TILE if tiled else None, max_pixels=1 << 40)
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
    args = parser.parse_args()
    if args.memory_child:
        height, width, tiled = (int(v) for v in args.memory_child.split(","))
        memory_child(height, width, bool(tiled), args.threads)
        return 0
    import tempfile

    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            rows = speed(args.threads, args.repeats, Path(tmp))
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"\nmachine load average (1/5/15 min) at the end: {load} on {os.cpu_count()} cores")
        print(
            f"Speed at {SIZE}x{SIZE}, {args.threads} threads, median of {args.repeats} runs "
            f"(CPU bf16 support: {'AVX512-BF16 or AMX present' if _has_bf16() else 'none'})"
        )
        print(f"{'path':44s} {'time (s)':>9s} {'speed-up':>9s} {'labels = tv':>12s}")
        for name, seconds, ratio, agree in rows:
            print(f"{name:44s} {seconds:9.3f} {ratio:8.2f}x {100 * agree:11.3f}%")
    if not args.skip_memory:
        rows = memory(args.threads)
        print("\nPeak memory (ru_maxrss of a child process, MiB; model deeplabv3-mobilenetv2, 21 classes)")
        print(f"{'image':12s} {'mode':8s} {'peak':>8s} {'outputs':>8s} {'peak - outputs - start':>24s}")
        for size, mode, peak, outputs, extra in rows:
            print(f"{size:12s} {mode:8s} {peak:8.0f} {outputs:8.0f} {extra:24.0f}")
    return 0


def _has_bf16() -> bool:
    from deeplab.devices import fast_bf16 as _fast_bf16

    return _fast_bf16()


if __name__ == "__main__":
    sys.exit(main())
