"""Time listing and parsing the real Occluded-Duke split (35,489 file names, from tests/data) on disk.

    python -m benchmarks.bench_datasets [--repeat 5] [--out FILE.json]

Builds a tree of empty files with the real names (in a temporary folder), then times
``load_dataset("occluded_duke", root)`` (scandir, the name regex, relabelling) ``--repeat`` times and
prints the best and median against the target (< 2 s).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

from drop_cli.data import load_dataset

LISTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "occluded_duke"
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
TARGET_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Occluded_Duke"
        for split, folder in FOLDERS.items():
            (root / folder).mkdir(parents=True)
            for name in gzip.decompress((LISTS / f"{split}.list.gz").read_bytes()).decode().split():
                (root / folder / name).touch()
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            ds = load_dataset("occluded_duke", tmp)
            times.append(time.perf_counter() - start)
    images = len(ds.train) + len(ds.query) + len(ds.gallery)
    result = {
        "images": images,
        "best_s": min(times),
        "median_s": statistics.median(times),
        "target_s": TARGET_S,
        "meets_target": statistics.median(times) < TARGET_S,
    }
    print(
        f"occluded_duke, {images:,} images: best {result['best_s']:.3f} s, median {result['median_s']:.3f} s "
        f"(target < {TARGET_S} s: {'met' if result['meets_target'] else 'NOT met'})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
