"""A trained model on new images: the model API (`ReidModel`), its ONNX export, and the runtimes.

- ``net``: `ModelSpec` (what a model needs besides its weights) and `InferenceNet` (its forward).
- ``backends``: PyTorch and onnxruntime behind one call.
- ``model``: `ReidModel.load(checkpoint or .onnx).embed(images)` and `.distance(a, b)`.
- ``export``: `export_onnx`, which checks the file against PyTorch before keeping it.
"""

from .export import ExportResult, export_onnx
from .model import Embeddings, ModelEmbedder, ReidModel, read_bgr
from .net import InferenceNet, ModelSpec

__all__ = [
    "Embeddings",
    "ExportResult",
    "InferenceNet",
    "ModelEmbedder",
    "ModelSpec",
    "ReidModel",
    "export_onnx",
    "read_bgr",
]
