"""`drop export`: a checkpoint as an ONNX model that checks itself against PyTorch before it is kept.

The graph is `InferenceNet`: input ``images`` float32 [N, 3, H, W] RGB in [0, 1] (resized to the
model's size; the normalisation is inside), outputs ``embeddings`` [N, M, D] (L2-normalised rows
global, foreground, parts), ``visibility`` [N, K] and, with ``parsing``, ``parsing`` [N, H/4, W/4]
uint8; the batch is dynamic. The `ModelSpec` is stored in the file's metadata, so `ReidModel.load`
reads an export as it reads the checkpoint.

After writing, onnxruntime runs the file on rendered synthetic crops (people, occluders, camera
noise, at several sizes) and its outputs must match PyTorch's (``TOLERANCE``) and rank a small gallery
the same way (top 10 of every query); otherwise the command fails and nothing is left under the final
name. The file is written with the TorchScript-based exporter: the torch.export-based one fails on
the model's ``bnneck["global"]`` (a Python keyword in the graph code it generates; torch 2.14).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_path, prepare_folder
from ..errors import DropError
from ..synthetic import plan, render
from .backends import INPUT, OUTPUTS, SPEC_KEY, OnnxBackend, TorchBackend, import_optional
from .model import Embeddings, ReidModel
from .net import InferenceNet, load_trained

# Max abs difference allowed between onnxruntime's and PyTorch's outputs (embeddings, visibility).
# float16: the error of half-precision convolutions through HRNet-W32 reached 2e-2 on single elements
# of the L2-normalised 512-d rows with some untrained weights (7e-4 with others; benchmarks/
# bench_export.py), where the rankings still agreed on 99 % of their top 10: the ranking overlap is
# what the float16 check relies on.
TOLERANCE = {"float32": 1e-4, "float16": 5e-2}
RANKED = 10  # the top of each query's ranking that is compared
# The least mean overlap of the top RANKED (as sets) of PyTorch's and onnxruntime's rankings; float32
# must also give the same images in the same order.
OVERLAP = {"float32": 1.0, "float16": 0.9}
DEFAULT_OPSET = 17
_CHECK_GALLERY, _CHECK_QUERIES = 48, 8


@dataclass
class ExportResult:
    onnx: Path
    opset: int
    dtype: str
    parsing: bool
    max_abs_diff: dict[str, float]  # output -> max |onnxruntime - pytorch| on the check crops
    ranking_equal: bool  # the top RANKED of every check query are the same images in the same order
    ranking_overlap: float  # mean share of the top RANKED that both rankings hold
    check_images: int
    seconds: float

    def to_json(self) -> dict:
        return {
            "onnx": str(self.onnx),
            "opset": self.opset,
            "dtype": self.dtype,
            "parsing": self.parsing,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": TOLERANCE[self.dtype],
            "ranking_equal": self.ranking_equal,
            "ranking_overlap": round(self.ranking_overlap, 4),
            "overlap_required": OVERLAP[self.dtype],
            "check_images": self.check_images,
            "seconds": round(self.seconds, 3),
        }


def check_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` BGR uint8 crops that look like the real thing (rendered synthetic test images: people
    in clothes, occluders, camera optics and noise), every third one resized so sizes vary."""
    items = [item for item in plan(max(8, count // 4), seed) if item.split != "train"][:count]
    crops = []
    for i, item in enumerate(items):
        rgb = render(item, max(8, count // 4), seed)[0]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        crops.append(bgr if i % 3 else np.ascontiguousarray(bgr[::2, ::2]))
    return crops


def _ranking(model: ReidModel, query, gallery) -> np.ndarray:
    return np.argsort(model.distance(query, gallery), axis=1, kind="stable")[:, :RANKED]


def export_onnx(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    half: bool = False,
    parsing: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` to ONNX (default: ``model.onnx`` beside it) and check the file.

    Args:
        opset: the ONNX opset (at least 14).
        half: float16 weights and arithmetic inside the graph (the input and outputs stay float32).
        parsing: also output the predicted label map.
    """
    start = time.perf_counter()
    onnx = import_optional("onnx")
    import_optional("onnxruntime")
    if opset < 14:
        raise DropError(f"--opset must be at least 14, got {opset}.")
    checkpoint = Path(checkpoint).expanduser()
    model, spec, _ = load_trained(checkpoint)
    cpu = torch.device("cpu")
    # --half converts a copy of the weights: the reference keeps running in float32.
    reference = ReidModel(
        TorchBackend(copy.deepcopy(model) if half else model, spec, cpu, amp=False), spec, checkpoint, cpu
    )
    out = Path(out).expanduser() if out else checkpoint.with_name("model.onnx")
    prepare_folder(out.parent)
    dtype = "float16" if half else "float32"
    crops = check_crops(_CHECK_GALLERY + _CHECK_QUERIES)
    batch = reference.preprocess(crops)
    expected = reference.embed(crops, parsing=parsing)

    full = InferenceNet(model, spec, parsing=parsing)
    net = _Half(full) if half else full
    with atomic_path(out, suffix=".onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns that spatial sizes become constants: they are, the input size is fixed.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (batch[:2],),
                str(tmp),
                input_names=[INPUT],
                output_names=list(OUTPUTS if parsing else OUTPUTS[:2]),
                dynamic_axes={name: {0: "batch"} for name in (INPUT, *OUTPUTS)},
                opset_version=opset,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=SPEC_KEY, value=spec.to_json())
        graph.producer_name = "drop"
        onnx.save(graph, str(tmp))
        exported = ReidModel(OnnxBackend(tmp, cpu), spec, tmp, cpu)
        got = exported.embed(crops, parsing=parsing)
        diffs = {
            "embeddings": float(np.abs(got.embeddings - expected.embeddings).max()),
            "visibility": float(np.abs(got.visibility - expected.visibility).max()),
        }
        if parsing:
            diffs["parsing"] = float(np.mean(got.parsing != expected.parsing))  # share of pixels that differ
        query, gallery = slice(0, _CHECK_QUERIES), slice(_CHECK_QUERIES, None)
        ours = _ranking(reference, _rows(expected, query), _rows(expected, gallery))
        theirs = _ranking(reference, _rows(got, query), _rows(got, gallery))
        same = bool(np.array_equal(ours, theirs))
        overlap = float(np.mean([len(set(a) & set(b)) / RANKED for a, b in zip(ours, theirs)]))
        worst = max(diffs["embeddings"], diffs["visibility"])
        if not worst <= TOLERANCE[dtype] or overlap < OVERLAP[dtype] or (dtype == "float32" and not same):  # NaN fails
            raise DropError(
                f"the exported model differs from PyTorch's: max abs difference {diffs['embeddings']:.2e} "
                f"(embeddings), {diffs['visibility']:.2e} (visibility), tolerance {TOLERANCE[dtype]:.0e}; "
                f"top-{RANKED} rankings {'equal' if same else 'differ'} (overlap {overlap:.2f}, "
                f"{OVERLAP[dtype]:.2f} required). Nothing was written to {out}.",
                hint="Try another --opset, or export without --half.",
            )
    return ExportResult(out, opset, dtype, parsing, diffs, same, overlap, len(crops), time.perf_counter() - start)


def _rows(embeddings: Embeddings, rows: slice) -> Embeddings:
    return Embeddings(embeddings.embeddings[rows], embeddings.visibility[rows], embeddings.names)


class _Half(torch.nn.Module):
    """The network in float16 between a float32 input and float32 outputs, as mixed-precision training
    runs it: the backbone and the parsing branch in float16, the pooling and the embedding head (the
    model casts their inputs) in float32."""

    def __init__(self, net: InferenceNet):
        super().__init__()
        self.net = net.half()
        self.net.model.embedding_head.float()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(images.half())
        return tuple(o.float() if o.is_floating_point() else o for o in out)
