"""deeplab: multiscale semantic segmentation, the DeepLab family (v1, v2, v3, v3+).

The public API: `build_model` (paper presets), `load_model` (our checkpoints and every peer layout
in `deeplab.formats`),
`MultiScale` (v2 MSC training wrapper), `Segmenter` (multi-scale, flip, tiles, CRF inference),
`DenseCRF` (the fully connected CRF) and `evaluate` (mIoU, per-class IoU, trimap over a data set).

Layers, imports flowing downward only (enforced by tests/test_layout.py; docs/architecture.md):
    apps/ (cli, options, predict, evaluate, demo, refine, report, plots, viz)
    train/ (trainer, config, optim, loss, sampling, log, timing)
    evaluation.py
    inference/ (segmenter, tiling, backends, onnx, openvino, cache)
    models/, crf/, data/, metrics.py
    formats/, checkpoint.py, imageio.py, devices.py, distributed.py
    forks.py, atomic.py, palette.py, constants.py
"""

from deeplab.crf import DenseCRF
from deeplab.evaluation import evaluate
from deeplab.inference import Segmenter
from deeplab.models import MultiScale, build_model, load_model

__version__ = "0.1.0"
__all__ = ["DenseCRF", "MultiScale", "Segmenter", "__version__", "build_model", "evaluate", "load_model"]
