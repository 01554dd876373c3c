"""Writing pictures: every PNG goes to a temporary name in the target folder first, then is renamed."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array [H, W, 3] uint8 as a PNG at ``path`` (folder made if needed)."""
    path = Path(path)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    tmp = _temporary(path)
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)
    return path


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """Write a matplotlib ``Figure`` as a PNG at ``path`` with the Agg renderer (its size in inches x ``dpi``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    tmp = _temporary(path)
    FigureCanvasAgg(fig)  # draws with Agg whatever pyplot's backend is
    fig.savefig(tmp, dpi=dpi, format="png")
    tmp.replace(path)
    return path
