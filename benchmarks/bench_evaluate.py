"""Evaluation throughput: `deeplab evaluate`'s loop against a plain reference loop, same scores.

The shipped shapes model on the shapes val split. The plain loop is what one writes by hand:
one image at a time, generate/decode, normalise, the eager model at each scale and flip, softmax
mean, the same DenseCRF, argmax, confusion matrix. Ours is `run_evaluation` (= `deeplab evaluate`,
trimap off as in the plain loop): batch norm folded, channels_last, images decoded in loader
workers, images of one size batched into cache-sized forward passes, the CRF in turn with the
network (on the CPU both use every core). Each run is a child process (its peak RSS is its memory);
prints images/s, the ratio, mIoU of both and whether the confusion matrices are equal.

    python benchmarks/bench_evaluate.py [--num-images 200] [--batch-size 8] [--workers 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from cpu import cpu_summary

SETTINGS = {  # name: (scales, flip, crf)
    "single scale": ((1.0,), False, False),
    "scales 0.75-1.5 + flip + CRF": ((0.75, 1.0, 1.25, 1.5), True, True),
}

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from deeplab.apps.demo import shipped_weights
from deeplab.apps.evaluate import run_evaluation
from deeplab.crf import DenseCRF
from deeplab.data import build_dataset
from deeplab.devices import keep_freed_memory
from deeplab.models import load_model
import torch.nn.functional as F

weights, n = str(shipped_weights()), args["num_images"]
scales, flip, crf = args["scales"], args["flip"], args["crf"]


def plain():
    model = load_model(weights).eval()
    data = build_dataset("shapes", None, "val")
    refine = DenseCRF() if crf else None
    mean, std = torch.tensor(model.meta.mean).view(1, 3, 1, 1), torch.tensor(model.meta.std).view(1, 3, 1, 1)
    k = len(data.classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    with torch.inference_mode():
        for i in range(n):
            rgb, mask = data[i]
            x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std
            h, w = rgb.shape[:2]
            probs = 0
            for s in scales:
                size = (max(1, round(h * s)), max(1, round(w * s)))
                xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                outs = [model(xs)] + ([model(xs.flip(-1)).flip(-1)] if flip else [])
                p = 0
                for out in outs:
                    if size != (h, w):
                        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
                    p = p + out.softmax(1)
                probs = probs + p / len(outs)
            probs = (probs / len(scales))[0]
            if refine is not None:
                probs = torch.from_numpy(np.asarray(refine(rgb, probs.numpy()), dtype=np.float32))
            labels = probs.argmax(0).numpy()
            valid = mask != data.ignore_index
            matrix += np.bincount(k * mask[valid].astype(np.int64) + labels[valid], minlength=k * k).reshape(k, k)
    return matrix


def ours():
    keep_freed_memory()  # as deeplab evaluate does
    segmenter = {"scales": scales, "flip": flip, "crf": crf}
    result = run_evaluation(weights, "shapes", None, "val", segmenter=segmenter, max_images=n,
                            trimap=False, progress=False, batch_size=args["batch_size"], workers=args["workers"])
    return np.array(result["confusion_matrix"], dtype=np.int64)


start = time.perf_counter()
matrix = plain() if args["loop"] == "plain" else ours()
seconds = time.perf_counter() - start
inter = np.diag(matrix).astype(float)
union = matrix.sum(0) + matrix.sum(1) - inter
miou = float(np.mean(inter[union > 0] / union[union > 0]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "miou": miou, "matrix": matrix.tolist(), "peak_mib": peak}))
"""


def run(loop: str, setting: tuple, args: argparse.Namespace, batch_size: int) -> dict:
    scales, flip, crf = setting
    spec = {"loop": loop, "scales": scales, "flip": flip, "crf": crf, "num_images": args.num_images}
    spec |= {"threads": args.threads, "batch_size": batch_size, "workers": args.workers}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "NUMBA_NUM_THREADS": str(args.threads)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{loop} run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(cpu_summary())
    print(
        f"shapes val, first {args.num_images} images, {args.threads} threads; ours: batch {args.batch_size}, "
        f"{args.workers} loader worker(s)\n"
    )
    print(
        f"{'setting':<30} {'plain img/s':>11} {'ours img/s':>10} {'ratio':>6} {'mIoU plain':>10} "
        f"{'mIoU ours':>9}  confusion matrices"
    )
    peaks = {}
    for name, setting in SETTINGS.items():
        plain = run("plain", setting, args, 1)
        ours = run("ours", setting, args, args.batch_size)
        if setting[2]:  # the CRF setting: the memory table's largest run
            peaks[(args.batch_size, args.num_images)] = ours["peak_mib"]
        rate_p, rate_o = args.num_images / plain["seconds"], args.num_images / ours["seconds"]
        diff = sum(abs(a - b) for ra, rb in zip(plain["matrix"], ours["matrix"]) for a, b in zip(ra, rb))
        same = "identical" if diff == 0 else f"differ in {diff // 2} pixels"
        print(
            f"{name:<30} {rate_p:>11.2f} {rate_o:>10.2f} {rate_o / rate_p:>5.2f}x {100 * plain['miou']:>10.2f} "
            f"{100 * ours['miou']:>9.2f}  {same}",
            flush=True,
        )
    print("\npeak memory (RSS of the evaluating process; scales + flip + CRF):")
    few = max(1, args.num_images // 4)
    for batch in (1, args.batch_size):
        spec = argparse.Namespace(**{**vars(args), "num_images": few})
        peaks[(batch, few)] = run("ours", SETTINGS["scales 0.75-1.5 + flip + CRF"], spec, batch)["peak_mib"]
    for (batch, n), peak in sorted(peaks.items()):
        print(f"  batch {batch:>3}, {n:>4} images: {peak:7.0f} MiB")


if __name__ == "__main__":
    main()
