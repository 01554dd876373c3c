"""The two runtimes a trained model runs in: PyTorch (a checkpoint) and onnxruntime (an exported file).

Both take a batch as `InferenceNet` does (float32 [N, 3, H, W] RGB in [0, 1], at the model's size) and
return numpy arrays: embeddings [N, M, D] float32, visibility [N, K] float32, and the label map
[N, H/4, W/4] uint8 or None.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DropError
from ..train.loop import amp_dtype
from ..train.session import place_model
from .net import InferenceNet, ModelSpec

# The ONNX file's metadata key that holds the ModelSpec (JSON), and its input and output names.
SPEC_KEY = "drop_model_spec"
INPUT = "images"
OUTPUTS = ("embeddings", "visibility", "parsing")
EXPORT_EXTRA = "Install the export extra: pip install 'drop-reid[export]' (onnx, onnxruntime)."


def import_optional(module: str, hint: str = EXPORT_EXTRA):
    """``import module``, or one DropError line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DropError(f"{module} is not installed.", hint=hint) from None


class TorchBackend:
    """A checkpoint's network on ``device`` (autocast on CUDA when its recipe trained with AMP)."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, device: torch.device, amp: bool):
        self.device = device
        self.autocast_dtype = amp_dtype(device, amp)
        self.net = InferenceNet(place_model(model, device, channels_last=False), spec).to(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, parsing: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        images = images.to(self.device, non_blocking=True)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.net(images, parsing=parsing)
        return (
            out[0].float().cpu().numpy(),
            out[1].float().cpu().numpy(),
            out[2].cpu().numpy() if parsing else None,
        )


class OnnxBackend:
    """An exported ONNX file in onnxruntime (CUDA where the runtime and the device have it)."""

    def __init__(self, path: Path, device: torch.device):
        ort = import_optional("onnxruntime")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for a file it cannot read
            raise DropError(
                f"{path} is not an ONNX model onnxruntime can load ({type(e).__name__}).",
                hint="Export it again with `drop export --checkpoint RUN/last.pt`.",
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        if SPEC_KEY not in meta or inputs != [INPUT] or self.outputs[:2] != list(OUTPUTS[:2]):
            raise DropError(
                f"{path} is not a model exported by drop (inputs {inputs}, outputs {self.outputs}).",
                hint="Export one with `drop export --checkpoint RUN/last.pt`.",
            )
        self.spec = ModelSpec.from_json(meta[SPEC_KEY])
        self.input_dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def __call__(self, images: torch.Tensor, parsing: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if parsing and "parsing" not in self.outputs:
            raise DropError(
                "this ONNX model was exported without the parsing output.",
                hint="Export it again with `drop export --parsing`.",
            )
        wanted = list(OUTPUTS) if parsing else list(OUTPUTS[:2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.session.run(wanted, {INPUT: images.cpu().numpy().astype(self.input_dtype, copy=False)})
        return out[0].astype(np.float32), out[1].astype(np.float32), out[2] if parsing else None
