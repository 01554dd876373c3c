"""A torch Dataset of ReID images with their labels, for training and feature extraction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ..errors import DatasetError, LabelsError
from ..labels import LabelFile
from .datasets import Record


def _read_rgb(path: Path) -> torch.Tensor:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(
            f"cannot read image {path}.",
            hint="Check the file, or run `drop prepare-data`, which flags unreadable images.",
        )
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)))


class ReidImages(TorchDataset):
    """Items ``{"image", "labels", "pid", "camid", "index"}`` for ``records`` below ``folder``.

    An item is asked for by its index, or by ``(index, seed)`` (``SeededBatches``): the transform
    then draws its random numbers from a CPU generator seeded with ``seed``, and the process's own
    random state is left as it was.

    Args:
        records: the images, paths relative to ``folder``.
        transform: ``(uint8 image [3, h, w], uint8 labels [h', w'] or None) -> (image, labels)``.
        labels: the prepare-data file (every record must be in it), or None for images only.
    """

    def __init__(self, records: list[Record], folder: Path, transform: Callable, labels: LabelFile | None = None):
        self.records, self.folder, self.transform, self.labels = records, Path(folder), transform, labels
        if labels is not None:
            missing = [r.path for r in records if r.path not in labels]
            if missing:
                raise LabelsError(
                    f"{len(missing)} image(s) have no labels in {labels.path}, e.g. {', '.join(missing[:3])}.",
                    hint=f"Run `drop prepare-data {labels.attrs.get('dataset', 'DATASET')} --root ROOT "
                    f"--labeler {labels.attrs.get('labeler')} --preset "
                    f"{labels.attrs.get('preset')} --overwrite` to label the whole dataset again.",
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        image = _read_rgb(self.folder / record.path)
        labels = torch.from_numpy(self.labels[record.path]) if self.labels is not None else None
        if seed is None:
            image, labels = self.transform(image, labels)
        else:
            with torch.random.fork_rng(devices=[]):  # torchvision's random transforms use the global generator
                torch.default_generator.manual_seed(seed)
                image, labels = self.transform(image, labels)
        item = {"image": image, "pid": record.pid, "camid": record.camid, "index": index}
        if labels is not None:
            item["labels"] = labels
        return item
