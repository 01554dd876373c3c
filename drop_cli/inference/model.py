"""`ReidModel`: a trained model on your own crops, from a checkpoint or from its ONNX export.

    model = ReidModel.load("runs/x/last.pt")        # or "model.onnx"
    out = model.embed(["a.jpg", "b.jpg"])           # paths, BGR uint8 arrays or an [N, 3, H, W] tensor
    d = model.distance(out, out)                    # the matrix `drop evaluate` computes

Images of any size are resized to the model's input as `drop extract-features` resizes them
(`EvalTransform`), so the same images give the same embeddings through either (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.transforms import EvalTransform
from ..errors import DropError
from ..evaluation.scoring import DEFAULT_DISTANCE, Rerank, make_setting, setting_distances
from ..features.forward import Features
from ..parts import FIRST_PART
from ..train.session import resolve_device
from .backends import OnnxBackend, TorchBackend
from .net import ModelSpec, load_trained

ImageInput = str | Path | np.ndarray


@dataclass
class Embeddings:
    """What `ReidModel.embed` returns for N images.

    Attributes:
        embeddings: [N, M, D] float32, L2-normalised rows ``names`` (global, foreground, K parts), as
            in a features file.
        visibility: [N, K] float32: 1 where the part is seen.
        names: the M row names.
        parsing: [N, H/4, W/4] uint8 predicted label maps (0 = background), when asked for.
    """

    embeddings: np.ndarray
    visibility: np.ndarray
    names: tuple[str, ...]
    parsing: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def row_visibility(self) -> np.ndarray:
        """[N, M] visibility of every row, as a features file stores it (global and foreground: 1)."""
        rows = np.ones(self.embeddings.shape[:2], np.float32)
        rows[:, FIRST_PART:] = self.visibility
        return rows

    def single_vector(self, form: str = "parts") -> np.ndarray:
        """One L2-normalised vector per image, for tools that compare images by a dot product (a
        tracker's cosine distance, a vector index): [N, D] or [N, (M - 1) * D].

        Args:
            form: ``foreground`` or ``global``: that row; ``visible_parts``: the foreground and the
                part rows concatenated, each part scaled by its visibility, so that a dot product adds
                the parts seen in both images, weighted (the part distance's weights without its
                per-pair normalisation); ``parts``: the same rows unscaled.
        """
        return single_vector(self.embeddings, self.row_visibility, form)


# `Embeddings.single_vector` forms, the default first (the best ranking of the four on the synthetic
# set, benchmarks/bench_single_vector.py: see the README).
SINGLE_VECTORS = ("parts", "visible_parts", "foreground", "global")


def single_vector(embeddings: np.ndarray, row_visibility: np.ndarray, form: str) -> np.ndarray:
    """`Embeddings.single_vector` on arrays: embeddings [N, M, D] (rows global, foreground, parts) and
    their [N, M] visibility."""
    if form == "global":
        vectors = embeddings[:, 0]
    elif form == "foreground":
        vectors = embeddings[:, 1]
    elif form in ("visible_parts", "parts"):
        rows = embeddings[:, 1:] * (row_visibility[:, 1:, None] if form == "visible_parts" else 1.0)
        vectors = rows.reshape(len(rows), -1)
    else:
        raise DropError(f"unknown single-vector form {form!r}.", hint=f"Use one of {', '.join(SINGLE_VECTORS)}.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class _Side:
    """An `Embeddings` (or a features file's split) as the scoring reads a set of images."""

    embeddings: np.ndarray
    visibility: np.ndarray
    pids: np.ndarray
    camids: np.ndarray


def _side(images) -> _Side:
    visibility = images.row_visibility if isinstance(images, Embeddings) else images.visibility
    n = len(images.embeddings)
    return _Side(images.embeddings, visibility, np.full(n, -1), np.full(n, -1))


def read_bgr(path: str | Path) -> np.ndarray:
    """An image file as a BGR uint8 array (OpenCV's convention); a DropError if it is not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DropError(
            f"cannot read {path} as an image." if Path(path).is_file() else f"image {path} not found.",
            hint="Pass image files (jpg, png, bmp, tif).",
        )
    return image


class ReidModel:
    """A trained DROP model. Build it with :meth:`load`.

    Attributes:
        spec: input size, normalisation, part names and test-time choices (`ModelSpec`).
        source: the checkpoint or ONNX file.
        device: where it runs.
    """

    def __init__(self, backend: TorchBackend | OnnxBackend, spec: ModelSpec, source: Path, device: torch.device):
        self._backend, self.spec, self.source, self.device = backend, spec, source, device
        # As `drop extract-features` prepares an image, without the normalisation (inside the network).
        self.transform = EvalTransform(
            spec.height, spec.width, antialias=spec.antialias, mean=(0.0,) * 3, std=(1.0,) * 3
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> ReidModel:
        """A drop checkpoint (``last.pt``) or a model exported by `drop export` (``.onnx``).

        Args:
            device: ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``.
        """
        path = Path(path).expanduser()
        dev = resolve_device(device)
        if not path.is_file():
            raise DropError(
                f"{path} is a folder, not a model file." if path.is_dir() else f"model file {path} not found.",
                hint="Pass a run folder's last.pt or an exported .onnx file.",
            )
        if path.suffix.lower() == ".onnx":
            backend = OnnxBackend(path, dev)
            return cls(backend, backend.spec, path, dev)
        model, spec, recipe = load_trained(path)
        return cls(TorchBackend(model, spec, dev, recipe.train.amp), spec, path, dev)

    @property
    def names(self) -> tuple[str, ...]:
        """The embedding rows: global, foreground, then the parts."""
        return self.spec.names

    @property
    def runtime(self) -> str:
        return "onnxruntime" if isinstance(self._backend, OnnxBackend) else "pytorch"

    def preprocess(self, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """Images -> float32 [N, 3, H, W] RGB in [0, 1] at the model's size.

        Args:
            images: paths, BGR uint8 arrays [h, w, 3] (OpenCV's convention), or an [N, 3, h, w]
                RGB tensor (uint8, or float in [0, 1], rounded to uint8 first as an image file would be).
        """
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise DropError(f"an image tensor must be [N, 3, H, W] RGB, got shape {tuple(images.shape)}.")
            batch = images if images.dtype == torch.uint8 else (images.float().clamp(0, 1) * 255).round().byte()
            return torch.stack([self.transform(image)[0] for image in batch]) if len(batch) else self._empty()
        tensors = []
        for image in images:
            bgr = read_bgr(image) if isinstance(image, (str, Path)) else np.asarray(image)
            if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
                raise DropError(f"an image array must be [H, W, 3] BGR uint8, got {bgr.shape} {bgr.dtype}.")
            rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)))
            tensors.append(self.transform(rgb)[0])
        return torch.stack(tensors) if tensors else self._empty()

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, 3, self.spec.height, self.spec.width)

    def run(self, batch: torch.Tensor, *, parsing: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The network alone on a preprocessed batch (:meth:`preprocess`): embeddings [N, M, D],
        visibility [N, K] and, with ``parsing``, the label maps [N, H/4, W/4] uint8 (else None)."""
        return self._backend(batch, parsing)

    def embed(
        self, images: Sequence[ImageInput] | torch.Tensor, *, batch_size: int = 64, parsing: bool = False
    ) -> Embeddings:
        """The embeddings, visibility and (with ``parsing``) label maps of ``images`` (see :meth:`preprocess`)."""
        if batch_size < 1:
            raise DropError(f"batch_size must be at least 1, got {batch_size}.")
        chunks = [
            self.run(self.preprocess(images[i : i + batch_size]), parsing=parsing)
            for i in range(0, len(images), batch_size)
        ]
        return self._joined(chunks, parsing)

    def _joined(self, chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], parsing: bool) -> Embeddings:
        """The `Embeddings` of the outputs of :meth:`run` on consecutive batches."""
        if not chunks:
            d, k = self.spec.embed_dim, len(self.spec.parts)
            return Embeddings(np.zeros((0, len(self.names), d), np.float32), np.zeros((0, k), np.float32), self.names)
        return Embeddings(
            np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[1] for c in chunks]),
            self.names,
            np.concatenate([c[2] for c in chunks if c[2] is not None]) if parsing else None,
        )

    def features(self, batches: Iterable[dict], advance: Callable[[int], None], *, parsing: bool) -> Features:
        """The `Features` of DataLoader batches (items from a `ReidImages` with :attr:`transform`): what
        the chunked, resumable extraction (`features.extraction.extract_to_file`) calls."""
        chunks, pids, camids = [], [], []
        for batch in batches:
            chunks.append(self.run(batch["image"], parsing=parsing))
            pids.append(batch["pid"].numpy())
            camids.append(batch["camid"].numpy())
            advance(len(batch["image"]))
        out = self._joined(chunks, parsing)
        return Features(out.embeddings, out.row_visibility, np.concatenate(pids), np.concatenate(camids), out.parsing)

    def distance(
        self, a, b, *, distance: str = DEFAULT_DISTANCE, visibility: bool = True, rerank: bool | Rerank = False
    ) -> np.ndarray:
        """[len(a), len(b)] distances between two `Embeddings` (or features-file splits), exactly as
        `drop evaluate --distance ... [--no-visibility] [--rerank]` computes them.

        Args:
            rerank: True for k-reciprocal re-ranking with its defaults, or a `Rerank(k1, k2,
                lambda_value)` for other parameters.
        """
        params = rerank if isinstance(rerank, Rerank) else Rerank()
        setting = make_setting(distance, visibility, rerank is not False)
        return setting_distances(_side(a), _side(b), self.names, setting, params, device=self.device)


@dataclass(frozen=True)
class ModelEmbedder:
    """A `ReidModel` as the Embedder of the chunked, resumable extraction (`drop embed`)."""

    model: ReidModel
    batch_size: int = 64
    workers: int = 0
    parsing: bool = False

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def transform(self) -> Callable:
        return self.model.transform

    def features(self, batches: Iterable[dict], advance: Callable[[int], None]) -> Features:
        return self.model.features(batches, advance, parsing=self.parsing)
