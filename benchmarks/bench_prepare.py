"""End-to-end prepare-data throughput: 128x256 JPEG crops in, one HDF5 labels file out.

Generates the synthetic set (once) and labels it with each labeler and worker count asked for,
timing the whole `drop_cli.prepare_data` call (worker start-up included). The pose rows are checked
against the targets below the table: a labels file of <= 4 KB per image, and with 2 workers
>= 60 images/s.

    python benchmarks/bench_prepare.py --ids 100 --labelers pose stripes --workers 1 2 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drop_cli import make_synthetic, prepare_data

if __package__:  # python -m benchmarks.bench_prepare
    from ._report import add_out_option, settings, verdict, write_json
else:  # python benchmarks/bench_prepare.py
    from _report import add_out_option, settings, verdict, write_json

# The pose labeler's targets (labels at its default 128x64)
POSE_TARGET_BYTES_PER_IMAGE = 4 * 1024
POSE_TARGET_IMAGES_PER_S, POSE_TARGET_WORKERS = 60.0, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--labelers", nargs="+", default=["pose", "stripes"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--root", type=Path, default=None, help="reuse a folder (default: a temporary one)")
    add_out_option(parser)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="drop-bench-"))
    made = make_synthetic(root, ids=args.ids, seed=0, progress=False)
    images = sum(made.images.values())
    table = Table(title=f"prepare-data, {images:,} synthetic 128x256 JPEG crops, {os.cpu_count()} CPU cores")
    for col in ("labeler", "workers", "seconds", "images/s", "bytes/image"):
        table.add_column(col, justify="right")
    rows = []
    for labeler in args.labelers:
        for workers in args.workers:
            row = with_targets(time_prepare(root, labeler, workers, images))
            rows.append(row)
            table.add_row(
                labeler,
                str(workers),
                f"{row['seconds']:.1f}",
                f"{row['images_per_s']:.1f}",
                f"{row['bytes_per_image']:.0f}",
            )
    Console().print(table)
    print_targets(rows)
    if args.out:
        write_json(args.out, {"settings": settings(args), "images": images, "rows": rows})


def time_prepare(root: Path, labeler: str, workers: int, images: int) -> dict:
    """One whole `prepare_data` call: its seconds, images/s and the labels file's bytes per image."""
    out = root / f"bench-{labeler}-{workers}.h5"
    start = time.perf_counter()
    prepare_data("synthetic", root=root, labeler=labeler, workers=workers, out=out, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    return {
        "labeler": labeler,
        "workers": workers,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "bytes_per_image": out.stat().st_size / images,
    }


def with_targets(row: dict) -> dict:
    """A pose row with its targets (the file size; the speed with 2 workers) and whether it meets them."""
    if row["labeler"] != "pose":
        return row
    row["target_bytes_per_image"] = POSE_TARGET_BYTES_PER_IMAGE
    met = row["bytes_per_image"] <= POSE_TARGET_BYTES_PER_IMAGE
    if row["workers"] == POSE_TARGET_WORKERS:
        row["target_images_per_s"] = POSE_TARGET_IMAGES_PER_S
        met = met and row["images_per_s"] >= POSE_TARGET_IMAGES_PER_S
    row["meets_target"] = met
    return row


def print_targets(rows: list[dict]) -> None:
    for row in rows:
        if "meets_target" in row:
            speed = (
                f"{row['images_per_s']:.1f} images/s (target >= {row['target_images_per_s']:g}), "
                if "target_images_per_s" in row
                else ""
            )
            print(
                f"{row['labeler']}, {row['workers']} worker(s): {speed}{row['bytes_per_image']:.0f} bytes/image "
                f"(target <= {row['target_bytes_per_image'] // 1024} KB): {verdict(row['meets_target'])}"
            )


if __name__ == "__main__":
    main()
