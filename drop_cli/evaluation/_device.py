"""Where evaluation's dense work runs (a CUDA device when there is one), and moving numpy arrays there."""

from __future__ import annotations

import numpy as np
import torch


def compute_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device; None means CUDA when available, else the CPU."""
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a float32 tensor on ``device``."""
    array = np.asarray(array, dtype=np.float32)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays; it never writes here
        array = array.copy()
    return torch.from_numpy(array).to(device)
