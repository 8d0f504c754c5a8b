"""deeplab: multiscale semantic segmentation, the DeepLab family (v1, v2, v3, v3+)."""

__version__ = "0.1.0"
from deeplab.inference import Segmenter  # noqa: E402,F401

from deeplab.models.multiscale import MultiScale  # noqa: E402,F401
from deeplab.presets import build_model  # noqa: E402,F401
from deeplab.weights import load_model  # noqa: E402,F401
from deeplab.crf import DenseCRF  # noqa: E402,F401
