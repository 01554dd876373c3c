"""What the benchmark scripts share: their ``--out FILE.json`` option and writing the results there.

The file holds the script's results, its settings (the command-line arguments) and the environment
(date, platform, Python, numpy and torch versions, CPU count, torch's threads), written atomically: a
temporary name in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path


def add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")


def settings(args: argparse.Namespace) -> dict:
    """The command-line arguments, ``--out`` left out."""
    return {key: value for key, value in vars(args).items() if key != "out"}


def verdict(met: bool | None) -> str:
    """How a printed line ends a target: met, NOT met, or not checked (None: not at the target's size)."""
    if met is None:
        return "not checked at this size"
    return "met" if met else "NOT met"


def environment() -> dict:
    import numpy as np
    import torch

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def write_json(path: Path, payload: dict) -> None:
    """``payload`` plus ``"environment"`` as JSON in ``path`` (its folder made if missing), atomically."""
    text = json.dumps({**payload, "environment": environment()}, indent=1, default=_plain) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _plain(value: object) -> object:
    """numpy scalars and paths, which json cannot write itself."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
