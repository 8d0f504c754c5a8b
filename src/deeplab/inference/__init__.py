"""Inference: ``Segmenter`` (scales, flip, fusion, tiles, CRF) over a backend.

- ``segmenter``: the Segmenter and the papers' strategies (``PRESETS``).
- ``tiling``: sliding windows that reproduce the whole-image result in bounded memory.
- ``backends``: batch-norm folding, channels_last, torch.compile; which backend "auto" picks.
- ``onnx``: ONNX export and the onnxruntime model (optional extra ``export``).
- ``openvino``: the OpenVINO model (optional extra ``openvino``); ``cache``: converted models on disk.
Nothing here reads or writes files of images: that is the applications' job (``deeplab.apps``).
"""

from deeplab.inference.backends import fold_batchnorm, prepare_model
from deeplab.inference.segmenter import DEFAULT_TILE, PRESETS, Prediction, Segmenter

__all__ = ["DEFAULT_TILE", "PRESETS", "Prediction", "Segmenter", "fold_batchnorm", "prepare_model"]
