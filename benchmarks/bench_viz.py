"""Time every picture of drop's visualisation on the synthetic set; the 20 x 11 ranking grid must take under 5 s.

Makes a synthetic set (``--ids``, in a temporary folder unless ``--root`` is given) with its
ground-truth labels, then draws each picture ``--repeat`` times and prints the best and median
times and the PNG's size, and whether the ranking grids' median meets the target (< 5 s):

* ranking: 20 queries x (query + top 10), 128 x 64 tiles, random part visibility, a random distance
  matrix (so that the rows show many different gallery images);
* labels: 16 images at 256 x 128; parsing: 8 images, the labels at a quarter size as the prediction;
* embeddings: t-SNE of 10 identities' random embeddings; curves: a 120-epoch history.

    python benchmarks/bench_viz.py                 # about 15 s on 2 cores
    python benchmarks/bench_viz.py --repeat 5 --pictures /tmp/viz    # keep the pictures
    python benchmarks/bench_viz.py --out viz.json  # also write the results as JSON
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drop_cli.api import make_synthetic, prepare_data
from drop_cli.data import load_dataset
from drop_cli.evaluation.parsing import resize_nearest
from drop_cli.labels import LabelFile
from drop_cli.viz import (
    ImageSet,
    draw_embeddings,
    draw_labels,
    draw_parsing,
    draw_ranking,
    plot_training_curves,
)

if __package__:  # python -m benchmarks.bench_viz
    from ._report import add_out_option, settings, verdict, write_json
else:  # python benchmarks/bench_viz.py
    from _report import add_out_option, settings, verdict, write_json

RANKING_QUERIES, RANKING_K = 20, 10
RANKING_TARGET_S = 5.0  # each ranking grid, median time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=40, help="identities of the synthetic set")
    parser.add_argument("--root", type=Path, help="reuse (or make) the synthetic set here")
    parser.add_argument("--pictures", type=Path, help="keep the pictures in this folder")
    parser.add_argument("--repeat", type=int, default=3)
    add_out_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "data"
        pictures = args.pictures or Path(tmp) / "pictures"
        make_synthetic(root, ids=args.ids, seed=0, workers=0, progress=False)
        labels_path = prepare_data("synthetic", root=root, labeler="synthetic", workers=0, progress=False).labels.path
        rows = run(load_dataset("synthetic", root), LabelFile(labels_path), pictures, args.repeat)
    print(f"{'picture':<34}{'best s':>8}{'median s':>10}{'PNG KB':>9}")
    for row in rows:
        print(f"{row['picture']:<34}{row['best_s']:>8.2f}{row['median_s']:>10.2f}{row['png_bytes'] / 1024:>9.0f}")
    for row in rows:
        if "meets_target" in row:
            print(
                f"{row['picture']}: median {row['median_s']:.2f} s "
                f"(target < {RANKING_TARGET_S:g} s: {verdict(row['meets_target'])})"
            )
    if args.out:
        write_json(args.out, {"settings": settings(args), "pictures": rows})


def run(ds, labels: LabelFile, out: Path, repeat: int) -> list[dict]:
    """Each picture's name, PNG file and size, and its ``repeat`` drawing times (the ranking grids with
    their target)."""
    rng = np.random.default_rng(0)
    parts = labels.parts

    def side(records) -> ImageSet:
        visibility = (rng.random((len(records), len(parts))) > 0.25).astype(np.float32)
        return ImageSet(
            [r.path for r in records],
            np.array([r.pid for r in records]),
            np.array([r.camid for r in records]),
            visibility,
            parts,
        )

    query, gallery = side(ds.query), side(ds.gallery)
    distmat = rng.random((len(ds.query), len(ds.gallery))).astype(np.float32)
    sample = [r.path for r in ds.query[:8]]
    predicted = resize_nearest(np.stack([labels[p] for p in sample]), labels.height // 4, labels.width // 4)
    everyone = ds.query + ds.gallery
    pids = np.array([r.pid for r in everyone])
    embeddings = rng.normal(size=(len(everyone), 2, 64)).astype(np.float32) + pids[:, None, None] % 7
    history = [
        {
            "epoch": e,
            "lr": 3.5e-4 * min(1, e / 10) * 0.1 ** ((e > 40) + (e > 70)),
            "id_global": 6 / e,
            "parsing": 0.35 / math.sqrt(e),
            "loss": 6 / e + 0.35 / math.sqrt(e),
            "memory": int(e > 10),
            **({"rank1": 0.6 * e / 120, "mAP": 0.5 * e / 120, "mINP": 0.2 * e / 120} if e % 10 == 0 else {}),
        }
        for e in range(1, 121)
    ]
    jobs: list[tuple[str, str, Callable[[Path], Path]]] = [
        (
            f"ranking {RANKING_QUERIES} x {RANKING_K + 1}",
            "ranking",
            lambda p: draw_ranking(p, ds.folder, query, gallery, distmat, count=RANKING_QUERIES, k=RANKING_K),
        ),
        (
            f"ranking {RANKING_QUERIES} x {RANKING_K + 1}, worst by AP",
            "ranking_worst",
            lambda p: draw_ranking(p, ds.folder, query, gallery, distmat, worst=RANKING_QUERIES, k=RANKING_K),
        ),
        ("labels 16", "labels", lambda p: draw_labels(p, labels, ds.folder, count=16)),
        ("parsing 8", "parsing", lambda p: draw_parsing(p, ds.folder, sample, predicted, parts, labels)),
        (
            "embeddings t-SNE",
            "embeddings",
            lambda p: draw_embeddings(p, embeddings, ("global", "foreground"), pids, num_ids=10),
        ),
        ("curves 120 epochs", "curves", lambda p: plot_training_curves(history, p)),
    ]
    rows = []
    for name, stem, job in jobs:
        path = out / f"{stem}.png"
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            job(path)
            times.append(time.perf_counter() - start)
        rows.append(timed(name, path, times))
    return rows


def timed(name: str, path: Path, times: list[float]) -> dict:
    """One picture's row: its PNG, its times and, for a ranking grid, the target and whether it is met."""
    row = {
        "picture": name,
        "file": path.name,
        "png_bytes": path.stat().st_size,
        "times_s": times,
        "best_s": min(times),
        "median_s": float(np.median(times)),
    }
    if name.startswith("ranking"):
        row["target_s"] = RANKING_TARGET_S
        row["meets_target"] = row["median_s"] < RANKING_TARGET_S
    return row


if __name__ == "__main__":
    main()
