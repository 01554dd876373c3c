"""Run folders: one per run, never overwritten, describing how the run was made."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch

from .._files import prepare_folder, write_text
from .._version import __version__


def new_run_dir(output: str | Path, name: str) -> Path:
    """``output/name``, or ``name-2``, ``name-3``, ... when that exists."""
    output = Path(output).expanduser()
    prepare_folder(output)
    candidate, n = output / name, 1
    while candidate.exists():
        n += 1
        candidate = output / f"{name}-{n}"
    prepare_folder(candidate)
    return candidate


def git_commit() -> str | None:
    """The commit of the drop source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str, seed: int, world_size: int) -> dict:
    """Versions, commit, device and command line, for env.json."""
    return {
        "drop_version": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor(),
        "world_size": world_size,
        "seed": seed,
        "command": sys.argv,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1))
