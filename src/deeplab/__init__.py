"""deeplab: multiscale semantic segmentation, the DeepLab family (v1, v2, v3, v3+).

The public API: `build_model` (paper presets), `load_model` (our checkpoints and torchvision's),
`MultiScale` (v2 MSC training wrapper), `Segmenter` (multi-scale, flip, tiles, CRF inference)
and `DenseCRF` (the fully connected CRF).
"""

from deeplab.crf import DenseCRF
from deeplab.inference import Segmenter
from deeplab.models.multiscale import MultiScale
from deeplab.presets import build_model
from deeplab.weights import load_model

__version__ = "0.1.0"
__all__ = ["DenseCRF", "MultiScale", "Segmenter", "build_model", "load_model", "__version__"]
