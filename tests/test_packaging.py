"""The package as users get it: a wheel built from the repository, installed in a fresh virtual
environment outside the checkout, runs the quick start (its recipes are package data)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_the_quickstart(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheels.glob("drop_reid-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The dependencies come from this environment's site-packages (a plain path: its own .pth files,
    # among them the editable install of the checkout, are not read), drop_cli from the wheel.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import drop_cli; print(drop_cli.__file__)"],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(site), f"drop_cli came from {where}, not from the wheel"
    tiny = [
        "--set",
        "train.epochs=1",
        "--set",
        "train.eval_every=1",
        "--set",
        "data.height=64",
        "--set",
        "data.width=32",
        "--set",
        "data.workers=0",
        "--set",
        "train.batch_size=8",
    ]
    out = subprocess.run(
        [str(venv / "bin" / "drop"), "quickstart", "--out", "qs", "--ids", "12", *tiny, "--json"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    run_dir = work / payload["run_dir"]
    assert len(payload["images"]) == 4 and (run_dir / "last.pt").is_file()
    assert (run_dir / "recipe.yaml").read_text().startswith("version:")
