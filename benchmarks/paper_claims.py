"""The DeepLab papers' claims, measured in the small on the built-in `shapes` data (`make claims`).

For each claim: the paper's figures (PASCAL VOC 2012 val), ours, and whether the direction holds.
Evaluation-time claims use one trained model (default: the shipped one); training-time ablations
train small models with a reduced recipe (said in the table) so that each run fits a 2-core CPU.
Whatever the outcome, it is printed as measured: the data are never tuned to make a claim hold.

    python benchmarks/paper_claims.py [--weights CKPT] [--num-images 100] [--iterations 600]
                                      [--work claims-output] [--skip-training]

Writes WORK/claims.md (the table), WORK/claims.json and WORK/trimap.png (v2 Fig. 5 in the small).
Trained ablation models are kept in WORK/train/NAME (an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deeplab import DenseCRF, Segmenter, load_model
from deeplab.apps.demo import shipped_weights
from deeplab.apps.plots import plot_trimap
from deeplab.checkpoint import read_checkpoint
from deeplab.data import ShapesDataset
from deeplab.evaluation import evaluate
from deeplab.train import Trainer, load_config

V3_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # v3 Sec. 4.3 multi-scale inference
MSC_SCALES = (1.0, 0.75, 0.5)  # v2 Sec. 4.1 MSC


@dataclass
class Claim:
    """One row: what the paper says, its figures, and the runs (label -> mIoU) we compare."""

    source: str
    statement: str
    paper: str
    ours: dict[str, float] = field(default_factory=dict)
    holds: bool | None = None
    note: str = ""


def miou(seg: Segmenter, data: ShapesDataset, n: int, trimap: bool = False) -> dict:
    """evaluate() of a Segmenter on the first n images (no progress bar)."""
    return evaluate(seg, data, trimap_widths=range(1, 21) if trimap else None, max_images=n, progress=False)


def increasing(values: list[float]) -> bool:
    """True when each value is larger than the one before it."""
    return all(b > a for a, b in zip(values, values[1:]))


def evaluation_claims(weights: Path, data: ShapesDataset, n: int, work: Path) -> list[Claim]:
    """Claims about inference, measured on one trained model."""
    claims = []
    by_os = {}
    for os_ in (32, 16, 8):
        by_os[os_] = miou(Segmenter(load_model(weights, output_stride=os_)), data, n)["miou"]
    trained_os = load_model(weights).meta.config["output_stride"]
    claims.append(
        Claim(
            "v3 Table 1 / Sec. 4.1",
            "a smaller output stride at evaluation is better: OS 8 > 16 > 32 (same weights)",
            "OS 32 / 16 / 8: 70.06 / 73.88 / 75.18 (trained at each OS, ResNet-50 block7)",
            {f"OS {k}": v for k, v in by_os.items()},
            increasing([by_os[32], by_os[16], by_os[8]]),
            f"our weights were trained at OS {trained_os}; the rates are rescaled for the others",
        )
    )
    os8 = load_model(weights, output_stride=8)
    chain = {
        "OS 16": by_os[16],
        "OS 8": by_os[8],
        "OS 8 + MS": miou(Segmenter(os8, scales=V3_SCALES, fusion="mean"), data, n)["miou"],
        "OS 8 + MS + flip": miou(Segmenter(os8, scales=V3_SCALES, fusion="mean", flip=True), data, n)["miou"],
    }
    claims.append(
        Claim(
            "v3 Table 6",
            "evaluate at OS 8, then add multi-scale inputs (0.5-1.75), then left-right flips: each adds",
            "77.21 -> 78.51 -> 79.45 -> 79.77",
            chain,
            increasing(list(chain.values())),
        )
    )
    model = load_model(weights)
    single = miou(Segmenter(model), data, n, trimap=True)
    msc = miou(Segmenter(model, scales=MSC_SCALES, fusion="max"), data, n, trimap=True)
    claims.append(
        Claim(
            "v2 Sec. 4.1 / Table 4",
            "multi-scale inputs fused by max (MSC, scales 1, 0.75, 0.5) beat a single scale",
            "ResNet-101: MSC adds about 2.5 points",
            {"single scale": single["miou"], "MSC max": msc["miou"]},
            msc["miou"] > single["miou"],
        )
    )
    crf = miou(Segmenter(model, crf=DenseCRF()), data, n, trimap=True)
    gain = crf["miou"] - single["miou"]
    near = crf["trimap"]["miou"][1] - single["trimap"]["miou"][1]  # band of 2 px
    claims.append(
        Claim(
            "v2 Sec. 4.1 / Fig. 5",
            "the fully connected CRF adds mIoU, and most within a few pixels of object boundaries",
            "about +1 to +4 points overall; the gain is largest in narrow trimap bands (Fig. 5)",
            {"single scale": single["miou"], "+ CRF": crf["miou"], "trimap 2 px, + CRF gain": near},
            gain > 0 and near > gain,
            f"overall gain {100 * gain:+.2f}, gain within 2 px {100 * near:+.2f}",
        )
    )
    single["label"], msc["label"], crf["label"] = "single scale", "MSC (max of 1, 0.75, 0.5)", "single scale + CRF"
    plot_trimap([single, msc, crf], work / "trimap.png")
    return claims


# (name, preset, build overrides): the training-time ablations, each trained with REDUCED_RECIPE
ABLATIONS = {
    "aspp": ("deeplabv3-mobilenetv2", {"atrous_rates": [6, 12, 18], "image_pooling": False}),
    "single-rate": ("deeplabv3-mobilenetv2", {"atrous_rates": [12], "image_pooling": False}),
    "aspp+pooling": ("deeplabv3-mobilenetv2", {"atrous_rates": [6, 12, 18], "image_pooling": True}),
    "mg-111": ("deeplabv3-resnet50", {"multi_grid": [1, 1, 1]}),
    "mg-124": ("deeplabv3-resnet50", {"multi_grid": [1, 2, 4]}),
}
REDUCED = {
    "mobilenetv2": "width 0.5, crop 128, batch 8, {it} iterations from scratch",
    "resnet50": "crop 96, batch 4, {it} iterations from scratch",
}


def train(name: str, work: Path, iterations: int, threads: int) -> Path:
    """Train one ablation (or finish an interrupted run); returns its final checkpoint."""
    preset, overrides = ABLATIONS[name]
    resnet = "resnet" in preset
    options = {"width_mult": 0.5} if not resnet else {}
    items = [
        f"output={work / 'train' / name}",
        f"model.arch={preset}",
        f"model.options={json.dumps({**options, **({'image_pooling': overrides['image_pooling']} if 'image_pooling' in overrides else {})})}",
        "data.dataset=shapes",
        "data.root=null",
        "data.train_split=train",
        "data.val_split=null",
        f"data.crop_size={96 if resnet else 128}",
        "data.scale_range=[0.5, 1.5]",
        "data.num_workers=0",
        "data.scan_masks=false",
        f"train.iterations={iterations}",
        f"train.batch_size={4 if resnet else 8}",
        "train.lr=0.05",
        "train.checkpoint_every=100",
        "train.log_every=50",
        "train.tensorboard=false",
    ]
    for key in ("atrous_rates", "multi_grid"):
        if key in overrides:
            items.append(f"model.{key}={overrides[key]}")
    cfg = load_config(None, items)
    last = Path(cfg.output) / "last.pt"
    torch.set_num_threads(threads)
    trainer = Trainer.from_config(cfg, progress=True)
    if last.is_file():
        trainer.resume(last)
    if trainer.iteration < iterations:
        trainer.fit()
    return last


def training_claims(data: ShapesDataset, n: int, work: Path, iterations: int, threads: int, skip: bool) -> list[Claim]:
    """Architecture ablations, each model trained with the reduced recipe then evaluated single-scale."""
    scores = {}
    for name in ABLATIONS:
        ckpt = work / "train" / name / "last.pt"
        if not skip:
            start = time.perf_counter()
            ckpt = train(name, work, iterations, threads)
            print(f"trained {name} in {time.perf_counter() - start:.0f} s", flush=True)
        if ckpt.is_file() and read_checkpoint(ckpt)["train_state"]["iteration"] >= iterations:  # finished runs only
            scores[name] = miou(Segmenter(load_model(ckpt)), data, n)["miou"]
    mobile = REDUCED["mobilenetv2"].format(it=iterations)
    resnet = REDUCED["resnet50"].format(it=iterations)

    def claim(source, statement, paper, better, worse, recipe) -> Claim:
        if better not in scores or worse not in scores:
            return Claim(source, statement, paper, note=f"not measured: no finished run of {worse} and {better}")
        ours = {worse: scores[worse], better: scores[better]}
        return Claim(source, statement, paper, ours, scores[better] > scores[worse], f"reduced recipe: {recipe}")

    return [
        claim(
            "v2 Sec. 4.1 / Table 3",
            "ASPP (rates 6, 12, 18) beats a single-rate head (rate 12, LargeFOV-like)",
            "VGG-16: ASPP-L beats LargeFOV",
            "aspp",
            "single-rate",
            f"v3 head on MobileNetV2 without image pooling; {mobile}",
        ),
        claim(
            "v3 Table 5",
            "image-level pooling adds to ASPP",
            "76.66 -> 77.21 (ASPP 6/12/18 + MG 1/2/4)",
            "aspp+pooling",
            "aspp",
            f"MobileNetV2; {mobile}",
        ),
        claim(
            "v3 Table 3 / 4",
            "multi-grid unit rates (1, 2, 4) beat (1, 1, 1) in block4",
            "(1, 2, 4) beats (1, 1, 1)",
            "mg-124",
            "mg-111",
            f"deeplabv3-resnet50 (ASPP + pooling); {resnet}",
        ),
    ]


def table(claims: list[Claim], n: int, weights: Path) -> str:
    """The claims as a Markdown table."""
    rows = [
        f"Measured on the first {n} images of the `shapes` val split; evaluation claims use `{weights.name}`.",
        "",
        "| claim | source | paper (VOC val) | ours (mIoU %) | holds |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        ours = ", ".join(f"{k} {100 * v:.2f}" for k, v in c.ours.items()) or "-"
        holds = {True: "yes", False: "**no**", None: "-"}[c.holds]
        note = f" ({c.note})" if c.note else ""
        rows.append(f"| {c.statement}{note} | {c.source} | {c.paper} | {ours} | {holds} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=shipped_weights())
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=600, help="iterations of each training ablation")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--work", type=Path, default=Path("claims-output"))
    parser.add_argument("--skip-training", action="store_true", help="use the ablation models already trained")
    parser.add_argument("--train-only", action="store_true", help="only train the ablation models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} threads", flush=True)
    data = ShapesDataset("val")
    start = time.perf_counter()
    if args.train_only:
        for name in ABLATIONS:
            train(name, args.work, args.iterations, args.threads)
        return 0
    claims = evaluation_claims(args.weights, data, args.num_images, args.work)
    claims += training_claims(data, args.num_images, args.work, args.iterations, args.threads, args.skip_training)
    text = table(claims, args.num_images, args.weights)
    print(text)
    (args.work / "claims.md").write_text(text + "\n")
    (args.work / "claims.json").write_text(json.dumps([c.__dict__ for c in claims], indent=1) + "\n")
    print(f"\n{time.perf_counter() - start:.0f} s; wrote {args.work / 'claims.md'} and {args.work / 'trimap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
