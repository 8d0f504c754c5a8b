"""deeplab: multiscale semantic segmentation, the DeepLab family (v1, v2, v3, v3+).

The public API: `build_model` (paper presets), `load_model` (our checkpoints and torchvision's),
`MultiScale` (v2 MSC training wrapper), `Segmenter` (multi-scale, flip, tiles, CRF inference),
`DenseCRF` (the fully connected CRF) and `evaluate` (mIoU, per-class IoU, trimap over a data set).

Layers, imports flowing downward only:
    apps/ (cli, predict, evaluate, demo, report, plots, viz)
    train/ (trainer, config, optim, sampling, distributed, timing)
    evaluation.py
    inference/ (segmenter, tiling, backends, onnx)
    models/, crf/, data/, metrics.py
    checkpoint.py, devices.py, distributed.py, imageio.py, atomic.py, palette.py, constants.py
"""

from deeplab.crf import DenseCRF
from deeplab.evaluation import evaluate
from deeplab.inference import Segmenter
from deeplab.models import MultiScale, build_model, load_model

__version__ = "0.1.0"
__all__ = ["DenseCRF", "MultiScale", "Segmenter", "__version__", "build_model", "evaluate", "load_model"]
