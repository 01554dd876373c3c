"""Time `drop evaluate --ablate` (through drop_cli.evaluate) on an Occluded-Duke-sized features file.

The file is synthetic: 2,210 query x 17,661 gallery images, M = 10 rows (global, foreground, 8 parts)
of D = 512, each an identity centre plus noise, L2-normalised, with random part visibility (about
70% visible). Gallery identities cover every query identity from another camera, so every query has
a valid match. The grid is 12 settings (4 distances x visibility x re-ranking, where visibility
applies) plus 8 left-out parts: 14 query-gallery matrices, made a block of queries at a time, and 6
re-ranked modes sharing one neighbour search. The default single setting is timed too.

The grid's time is checked against the target (<= 120 s) at full size only.

    python benchmarks/bench_ablate.py                 # full size
    python benchmarks/bench_ablate.py --scale 0.25    # a quick run
    python benchmarks/bench_ablate.py --out ablate.json   # also write the results as JSON
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import drop_cli
from drop_cli.features.file import FeatureWriter

if __package__:  # python -m benchmarks.bench_ablate
    from ._report import add_out_option, settings, verdict, write_json
else:  # python benchmarks/bench_ablate.py
    from _report import add_out_option, settings, verdict, write_json

OCCLUDED_DUKE = (2210, 17661)
IDENTITIES, CAMERAS, DIM = 1110, 8, 512
TARGET_S = 120.0  # the whole grid at full size
NAMES = (
    "global",
    "foreground",
    "head",
    "left_arm",
    "right_arm",
    "torso",
    "left_leg",
    "right_leg",
    "left_foot",
    "right_foot",
)


def write_cache(path: Path, num_query: int, num_gallery: int, rng: np.random.Generator) -> None:
    """A features file with Occluded-Duke-like sizes and identity structure (see the module docstring)."""
    identities = min(IDENTITIES, num_gallery)
    centres = rng.standard_normal((identities, len(NAMES), DIM), dtype=np.float32)
    g_pids = np.concatenate([np.arange(identities), rng.integers(0, identities, num_gallery - identities)])
    g_camids = rng.integers(0, CAMERAS, num_gallery)
    q_pids = rng.integers(0, identities, num_query)
    q_camids = (g_camids[q_pids] + 1) % CAMERAS  # gallery image q_pid (of identity q_pid) is from another camera
    with FeatureWriter(path, NAMES, {"dataset": "occluded_duke", "splits": ["query", "gallery"]}) as writer:
        for split, pids, camids in (("query", q_pids, q_camids), ("gallery", g_pids, g_camids)):
            writer.add_split(
                split, [f"{split}/{i:06d}.jpg" for i in range(len(pids))], pids, camids, DIM, "float32", None
            )
            for start in range(0, len(pids), 4096):
                ids = pids[start : start + 4096]
                emb = centres[ids] + 3.0 * rng.standard_normal((len(ids), len(NAMES), DIM), dtype=np.float32)
                emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
                vis = (rng.random((len(ids), len(NAMES))) < 0.7).astype(np.float32)
                vis[:, :2] = 1
                writer.write(split, start, emb, vis, None)
        writer.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the query and gallery counts by this")
    parser.add_argument("--seed", type=int, default=0)
    add_out_option(parser)
    args = parser.parse_args()
    num_query, num_gallery = (max(20, round(n * args.scale)) for n in OCCLUDED_DUKE)
    result: dict = {"query": num_query, "gallery": num_gallery, "feature_rows": len(NAMES), "dim": DIM}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.h5"
        start = time.perf_counter()
        write_cache(path, num_query, num_gallery, np.random.default_rng(args.seed))
        result["write_s"] = time.perf_counter() - start
        result["cache_mb"] = path.stat().st_size / 2**20
        print(
            f"cache: {num_query:,} query x {num_gallery:,} gallery, {len(NAMES)} x {DIM}, "
            f"{result['cache_mb']:,.0f} MB, written in {result['write_s']:.1f} s"
        )
        start = time.perf_counter()
        single = drop_cli.evaluate(path, out=folder, progress=False)
        result["single_s"] = time.perf_counter() - start
        result["single"] = single.results[0]
        print(
            f"evaluate (parts+foreground, visibility): {result['single_s']:.1f} s, rank-1 {single.results[0]['rank1']:.3f}"
        )
        start = time.perf_counter()
        grid = drop_cli.evaluate(path, ablate=True, out=folder, progress=False)
        seconds = time.perf_counter() - start
    full_size = (num_query, num_gallery) == OCCLUDED_DUKE
    result |= {
        "ablate_s": seconds,
        "target_s": TARGET_S,
        "meets_target": seconds <= TARGET_S if full_size else None,
        "grid": grid.results,
    }
    print(
        f"evaluate --ablate ({len(grid.results)} settings): {seconds:.1f} s "
        f"(target <= {TARGET_S:.0f} s at full size: {verdict(result['meets_target'])})"
    )
    for row in grid.results:
        print(
            f"  {row['distance']:<17} vis={row['visibility']!s:<5} rerank={row['rerank']!s:<5} "
            f"left_out={row['left_out'] or '-':<10} rank-1 {row['rank1']:.3f} mAP {row['mAP']:.3f}"
        )
    if args.out:
        write_json(args.out, {"settings": settings(args), **result})


if __name__ == "__main__":
    main()
