"""End-to-end prepare-data throughput: 128x256 JPEG crops in, one HDF5 labels file out.

Generates the synthetic set (once) and labels it with each labeler and worker count asked for,
timing the whole `drop_cli.prepare_data` call (worker start-up included).

    python benchmarks/bench_prepare.py --ids 100 --labelers pose stripes --workers 1 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--labelers", nargs="+", default=["pose", "stripes"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--root", type=Path, default=None, help="reuse a folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="drop-bench-"))
    made = make_synthetic(root, ids=args.ids, seed=0, progress=False)
    images = sum(made.images.values())
    table = Table(title=f"prepare-data, {images:,} synthetic 128x256 JPEG crops, {os.cpu_count()} CPU cores")
    for col in ("labeler", "workers", "seconds", "images/s", "bytes/image"):
        table.add_column(col, justify="right")
    for labeler in args.labelers:
        for workers in args.workers:
            out = root / f"bench-{labeler}-{workers}.h5"
            start = time.perf_counter()
            prepare_data(
                "synthetic", root=root, labeler=labeler, workers=workers, out=out, overwrite=True, progress=False
            )
            seconds = time.perf_counter() - start
            table.add_row(
                labeler, str(workers), f"{seconds:.1f}", f"{images / seconds:.1f}", f"{out.stat().st_size / images:.0f}"
            )
    Console().print(table)


if __name__ == "__main__":
    main()
