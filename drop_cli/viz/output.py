"""Writing pictures: every PNG goes to a temporary name in the target folder first, then is renamed
(``drop_cli._files``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .._files import atomic_path, write_bytes


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array [H, W, 3] uint8 as a PNG at ``path`` (folder made if needed)."""
    path = Path(path)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    return write_bytes(path, data.tobytes())


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """Write a matplotlib ``Figure`` as a PNG at ``path`` with the Agg renderer (its size in inches x ``dpi``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(fig)  # draws with Agg whatever pyplot's backend is
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path
