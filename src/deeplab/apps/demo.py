"""`deeplab demo`: the whole system at work, first on real photos with real weights, then on
held-out built-in scenes with the model trained here.

Real photos (``apps.photos``) are segmented by the shipped ``voc-mobilenetv2`` (TensorFlow's DeepLab
v3 MobileNetV2) single scale, with v3's scales + flip, and with the CRF, scored against their truth,
with TensorFlow Lite's own runtime beside ours where it is installed. Then `shapes` validation scenes
the same three ways with the shipped shapes model. Prints tables of scores and times; writes an
HTML report with overlays, per-class IoU and trimap plots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deeplab.apps.evaluate import write_result
from deeplab.apps.options import segmenter_from_options
from deeplab.apps.photos import BIRD, Photo, PhotoSet, TFLiteRuntime, real_photos
from deeplab.apps.plots import plot_class_iou, plot_training_curves, plot_trimap
from deeplab.apps.report import Report
from deeplab.apps.viz import overlay, overlay_with_legend
from deeplab.atomic import atomic_write
from deeplab.data.shapes import ShapesDataset
from deeplab.evaluation import evaluate
from deeplab.inference import Segmenter
from deeplab.models import load_model
from deeplab.models.named import NAMED_WEIGHTS, weights_path
from deeplab.palette import VOC_CLASSES, voc_palette

SHIPPED_MODEL = "shapes-mobilenetv2"  # a name of models.NAMED_WEIGHTS
REAL_MODEL = "voc-mobilenetv2"  # the real weights the real photos are segmented with
REAL_STRATEGIES: dict[str, dict[str, Any]] = {
    "single scale": {},
    "scales 0.5-1.75 + flip (v3)": {"preset": "deeplabv3"},
    "scales + flip + CRF": {"preset": "deeplabv3", "crf": True},
}
HERO = "hero.png"  # one real photo and its segmentation, side by side (the README's picture)
TRAINING_LOG = "shapes-mobilenetv2-log.csv"  # log.csv of the run that trained the shipped model
CLAIMS = "claims.json"  # written by benchmarks/paper_claims.py (its WORK/claims.json)
TRIMAP_SHOWN = (2, 5, 10, 20)
HEADER = ["strategy", "mIoU", "pixel acc"] + [f"trimap {w}px" for w in TRIMAP_SHOWN] + ["s/image"]
STRATEGIES: dict[str, dict[str, Any]] = {
    "single scale": {"scales": (1.0,)},
    "multi-scale + flip": {"scales": (0.75, 1.0, 1.25, 1.5), "flip": True, "fusion": "mean"},
    "multi-scale + flip + CRF": {"scales": (0.75, 1.0, 1.25, 1.5), "flip": True, "fusion": "mean", "crf": True},
}


def shipped_weights() -> Path:
    """The checkpoint trained on `shapes` by configs/shapes.yaml then configs/shapes-finetune.yaml,
    shipped inside the package."""
    return weights_path(SHIPPED_MODEL)


def run_demo(
    output: str | Path = "demo-output",
    num_images: int = 40,
    weights: str | Path | None = None,
    panels: int = 6,
    echo: Callable[[str], None] = print,
    device: str | None = None,
) -> list[dict]:
    """Evaluate the three strategies, print the table, write the report; returns the results."""

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    real = _real_photos_section(out, echo, device)
    weights = Path(weights) if weights else shipped_weights()
    model = load_model(weights)
    data = ShapesDataset("val", num_images=num_images)
    segmenters = {}
    for name, options in STRATEGIES.items():
        segmenters[name] = segmenter_from_options(model, device=device, **options)
    _warm_up(segmenters, data[0][0])
    results = []
    for name, seg in segmenters.items():
        start = time.perf_counter()
        result = evaluate(seg, data, label=name, progress=True)
        result["seconds_per_image"] = (time.perf_counter() - start) / len(data)
        write_result(result, out / f"result-{_slug(name)}.json")
        results.append(result)
    echo(format_table(results))
    report = _report(results, weights, len(data))
    report.sections = real.sections + report.sections
    _add_panels(report, out, segmenters, data, panels)
    _add_plots(report, out, results)
    _add_training(report, out)
    _add_claims(report)
    path = report.write(out)
    echo(f"report: {path.resolve()}")
    return results


def format_table(results: list[dict]) -> str:
    """One row per strategy: mIoU, pixel accuracy, trimap mIoU at a few widths, time per image."""
    return _text_table(HEADER, [_row(r) for r in results])


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _row(result: dict) -> list[str]:
    trimap = result["trimap"]
    band = [trimap["miou"][trimap["widths"].index(w)] for w in TRIMAP_SHOWN]
    cells = [result["miou"], result["pixel_accuracy"], *band]
    return [result["label"], *(f"{100 * v:.2f}" for v in cells), f"{result['seconds_per_image']:.3f}"]


def _labels(predictor: Any, rgb: np.ndarray) -> np.ndarray:
    """A predictor's labels: a Segmenter's without probabilities (as the TFLite runtime gives them)."""
    return (predictor(rgb, probs=False) if isinstance(predictor, Segmenter) else predictor(rgb)).labels


def _warm_up(segmenters: dict, image: np.ndarray) -> None:
    """One call each so that the times exclude one-off costs (CRF compile cache load, allocators)."""
    for seg in segmenters.values():
        seg(image, probs=False)


def _report(results: list[dict], weights: Path, n: int) -> Report:
    report = Report("deeplab demo", "DeepLab at work: real photos with real weights, then the model trained here.")
    report.heading(
        "Built-in scenes: the model trained here",
        f"The shipped shapes model ({weights.name}), trained from scratch on the generated shapes data set, "
        f"on {n} held-out scenes.",
    )
    report.heading(
        "Scores",
        "mIoU and pixel accuracy in %, trimap = mIoU (%) within a band of that "
        "width around the ground-truth object boundaries (DeepLab v2, Sec. 4.1.3).",
    )
    report.table(HEADER, [_row(r) for r in results])
    return report


def _add_panels(report: Report, out: Path, segmenters: dict, data: Any, count: int) -> None:
    """One row per example: the image, the ground truth, each strategy's prediction; one legend."""
    report.heading("Examples", "one row per scene: the image, the ground truth, then each strategy's prediction")
    report.legend(data.classes, data.palette)
    folder = out / "examples"
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(min(count, len(data))):
        image, mask = data[i]
        row = [
            _save(folder / f"{i:02d}-image.png", image),
            _save(folder / f"{i:02d}-truth.png", overlay(image, mask, data.palette, 0.6)),
        ]
        for name, seg in segmenters.items():
            picture = overlay(image, seg(image, probs=False).labels, data.palette, 0.6)
            row.append(_save(folder / f"{i:02d}-{_slug(name)}.png", picture))
        rows.append([str(p.relative_to(out)) for p in row])
    report.grid(["image", "ground truth", *segmenters], rows)


def _add_training(report: Report, out: Path) -> None:
    """The shipped model's training curve, from the log of the run that made it."""
    log = Path(str(resources.files("deeplab") / "assets" / TRAINING_LOG))
    if not log.is_file():
        return
    report.heading(
        "How the shipped model was trained",
        f"deeplab train --config configs/shapes.yaml, then --config configs/shapes-finetune.yaml from its "
        f"best.pt (iterations 5001-8000 in {log.name})",
    )
    paths = plot_training_curves(log, out / "training")
    report.figures([(str(p.relative_to(out)), p.stem) for p in paths], plot=True)


def _add_claims(report: Report) -> None:
    """The papers' claims re-measured from a pretrained backbone (benchmarks/paper_claims.py), as shipped."""
    path = Path(str(resources.files("deeplab") / "assets" / CLAIMS))
    if not path.is_file():
        return
    shipped = json.loads(path.read_text())
    report.heading(
        "The papers' claims, measured in the small",
        "python benchmarks/paper_claims.py: the paper's figures (PASCAL VOC val) next to ours on shapes val. "
        + shipped["recipe"],
    )
    rows = []
    for c in shipped["claims"]:
        ours = ", ".join(f"{k} {100 * sum(v) / len(v):.2f}" for k, v in c["ours"].items()) or "-"
        spread = max((max(v) - min(v) for v in c["ours"].values()), default=None)
        holds = {True: "yes", False: "no", None: "-"}[c["holds"]]
        statement = c["statement"] + (f" ({c['note']})" if c["note"] else "")
        rows.append([statement, c["source"], c["paper"], ours, "-" if spread is None else f"{100 * spread:.2f}", holds])
    report.table(["claim", "source", "paper", "ours (mIoU %, mean of seeds)", "seed spread", "holds"], rows, wrap=True)


def _add_plots(report: Report, out: Path, results: list[dict]) -> None:
    report.heading("Per-class IoU and the trimap curve")
    items = [(plot_trimap(results, out / "trimap.png"), "trimap: mIoU near boundaries")]
    for r in results:
        items.append((plot_class_iou(r, out / f"class_iou-{_slug(r['label'])}.png"), r["label"]))
    report.figures([(str(Path(p).relative_to(out)), c) for p, c in items], plot=True)


def _save(path: Path, rgb: np.ndarray) -> Path:
    atomic_write(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))
    return path


def _slug(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    return "-".join(words)


def _real_photos_section(out: Path, echo: Callable[[str], None], device: str | None) -> Report:
    """Real photos through the real weights three ways (+ the TFLite runtime): tables, pictures."""
    photos = real_photos()
    model = load_model(REAL_MODEL)
    segmenters = {name: segmenter_from_options(model, device=device, **o) for name, o in REAL_STRATEGIES.items()}
    predictors: dict[str, Any] = dict(segmenters)
    try:
        predictors["TFLite runtime, 8-bit (reference)"] = TFLiteRuntime(weights_path(REAL_MODEL))
    except ImportError:
        echo("ai-edge-litert is not installed: the TFLite runtime's column is left out")
    labelled = PhotoSet(photos)
    _warm_up(segmenters, photos[0].rgb)
    results, labels = [], {}
    for name, predictor in predictors.items():
        start = time.perf_counter()
        labels[name] = [_labels(predictor, p.rgb) for p in photos]
        seconds = (time.perf_counter() - start) / len(photos)
        result = evaluate(predictor, labelled, label=name, progress=False)
        results.append(result | {"seconds_per_image": seconds})
    accuracy = _per_photo(photos, labels)
    echo(f"{len(labelled)} real photos with ground truth, {REAL_MODEL} ({NAMED_WEIGHTS[REAL_MODEL].description}):")
    echo(format_table(results))
    echo(_text_table(["photo", *predictors], accuracy))
    report = Report("")
    report.heading(
        "Real photos: TensorFlow's DeepLab v3 (MobileNetV2) on PASCAL VOC photos",
        f"The shipped {REAL_MODEL}: {NAMED_WEIGHTS[REAL_MODEL].description}; {NAMED_WEIGHTS[REAL_MODEL].published}. "
        f"Scores over the {len(labelled)} photos with ground truth, in %: mIoU counts every class that is in "
        "the truth or the prediction, so a few stray pixels of an absent class weigh as much as a whole class; "
        "pixel accuracy and the bird's IoU say more on five photos. The TFLite runtime runs the same file in "
        "8 bits at its fixed 513x513 input.",
    )
    report.table(HEADER, [_row(r) for r in results])
    report.table(["pixel accuracy (%)", *predictors], accuracy)
    _real_panels(report, out, photos, labels)
    best = list(segmenters)[-1]
    hero = photos[0]
    picture = overlay_with_legend(hero.rgb, labels[best][0], VOC_CLASSES, voc_palette(len(VOC_CLASSES)), 0.5)
    _save(out / HERO, _side_by_side(hero.rgb, picture))
    return report


def _per_photo(photos: list[Photo], labels: dict[str, list[np.ndarray]]) -> list[list[str]]:
    """Rows of pixel accuracy per labelled photo and predictor, and the bird's IoU."""
    rows = []
    for k, photo in enumerate(photos):
        if photo.truth is None:
            continue
        valid = photo.truth != 255
        cells = [f"{100 * (labels[name][k][valid] == photo.truth[valid]).mean():.2f}" for name in labels]
        rows.append([f"{photo.name} ({photo.source})", *cells])
    bird = next(k for k, p in enumerate(photos) if p.name == "bird")
    truth = photos[bird].truth
    assert truth is not None
    ious = [
        ((labels[n][bird] == BIRD) & (truth == BIRD)).sum() / ((labels[n][bird] == BIRD) | (truth == BIRD)).sum()
        for n in labels
    ]
    rows.append(["bird IoU (Coral's own test: > 0.90)", *(f"{v:.3f}" for v in ious)])
    return rows


def _real_panels(report: Report, out: Path, photos: list[Photo], labels: dict[str, list[np.ndarray]]) -> None:
    """One row per photo: the photo, its truth, each predictor's segmentation; one legend."""
    palette = voc_palette(len(VOC_CLASSES))
    present = sorted({int(c) for name in labels for lab in labels[name] for c in np.unique(lab)} - {255})
    report.legend([VOC_CLASSES[c] for c in present], [palette[c] for c in present])
    folder = out / "real"
    folder.mkdir(exist_ok=True)
    rows = []
    for k, photo in enumerate(photos):
        slug = _slug(photo.name)
        row = [_save(folder / f"{slug}.png", photo.rgb)]
        truth = photo.truth if photo.truth is not None else np.full(photo.rgb.shape[:2], 255, np.uint8)
        row.append(_save(folder / f"{slug}-truth.png", overlay(photo.rgb, truth, palette, 0.6)))
        for name in labels:
            row.append(_save(folder / f"{slug}-{_slug(name)}.png", overlay(photo.rgb, labels[name][k], palette, 0.6)))
        rows.append([str(p.relative_to(out)) for p in row])
    report.grid(["photo", "ground truth (none: dog)", *labels], rows)


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return canvas
