"""Evaluation and re-ranking at MSMT17 size and below: time, peak memory, and how they grow with N.

For each size N (queries : gallery as MSMT17's 11,659 : 82,161), clustered synthetic embeddings
(`drop_cli.synthetic.embeddings`: identities of about 30 images, 10 rows of 512, 30 % of the parts
hidden) are scored under DROP's distance (parts + foreground, visibility-weighted) as `drop evaluate`
scores them:

* ``evaluate``: `drop_cli.evaluate` of a features file holding them (float32, written to a temporary
  folder): the file read, the query-gallery distances block by block, each block ranked as it comes;
  target at MSMT17 size: <= 4 GB peak (the process, embeddings included) and <= 3 min.
* ``evaluate --rerank``: the same with k-reciprocal re-ranking from the embeddings
  (`re_ranked_blocks`), ranked as it streams; targets at MSMT17 size: <= 8 GB peak and <= 2x the
  floor. Its prediction (`re_rank_embeddings_memory_bytes`, beyond the embeddings) is printed beside
  the measured growth minus that of reading the file (measured alone).
* ``floor``: the matrix products alone of the N x N part distances re-ranking needs (one
  [block, D] x [D, N] product per row of the distance and block of points, nothing else).

Peak memory is measured as in bench_evaluation.py (VmHWM growth during the call, plus the resident
set before it for the process total).

    python benchmarks/bench_scale.py                               # 12k, 25k, 50k and 93,820 points
    python benchmarks/bench_scale.py --sizes 12000 --out scale.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import drop_cli
from drop_cli.evaluation import re_rank_embeddings_memory_bytes
from drop_cli.evaluation.rerank import _EMBEDDING_BLOCK_VALUES
from drop_cli.features.file import read_features, write_features
from drop_cli.parts import part_names, row_names
from drop_cli.synthetic.embeddings import clustered_embeddings

if __package__:
    from ._report import add_out_option, settings, verdict, write_json
    from .bench_evaluation import _proc_status_kb, measure
else:
    from _report import add_out_option, settings, verdict, write_json
    from bench_evaluation import _proc_status_kb, measure

MSMT17 = (11659, 82161)
NAMES = row_names(part_names("eight"))  # global, foreground, 8 parts: 10 rows
EVALUATE_TARGET_S, EVALUATE_TARGET_GB = 180.0, 4.0
RERANK_TARGET_GB, RERANK_TARGET_RATIO = 8.0, 2.0
IMAGES_PER_ID = 30


def split_sizes(total: int) -> tuple[int, int]:
    num_query = max(1, round(total * MSMT17[0] / sum(MSMT17)))
    return num_query, total - num_query


def gemm_floor(embeddings: np.ndarray, rows: slice) -> float:
    """Seconds of the products of every point's rows with every point's: the N x N part distances'
    arithmetic, in the blocks re-ranking uses."""
    points = np.ascontiguousarray(embeddings[:, rows].transpose(1, 0, 2))  # [M, N, D]
    n = points.shape[1]
    block = max(1, _EMBEDDING_BLOCK_VALUES // n)
    out = np.empty((block, n), np.float32)
    start_time = time.perf_counter()
    for start in range(0, n, block):
        stop = min(start + block, n)
        for part in points:
            np.matmul(part[start:stop], part.T, out=out[: stop - start])
    return time.perf_counter() - start_time


def bench_size(total: int, seed: int, folder: Path) -> list[dict]:
    num_query, num_gallery = split_sizes(total)
    data = clustered_embeddings(total, max(1, total // IMAGES_PER_ID), rows=len(NAMES), seed=seed)
    path = folder / f"features-{total}.h5"
    splits = {"query": data.take(slice(0, num_query)), "gallery": data.take(slice(num_query, None))}
    write_features(path, splits, NAMES, {"dataset": "msmt17"})
    rows = slice(1, len(NAMES))  # parts + foreground
    floor = gemm_floor(data.embeddings, rows)
    del data
    full_size = (num_query, num_gallery) == MSMT17
    size = f"{num_query:,} x {num_gallery:,}"
    resident_gb = _proc_status_kb("VmRSS") / 2**20
    lines = []

    _, _, read_mb = measure(lambda: read_features(path))  # the embeddings in memory: what both jobs start with
    plain, seconds, plain_mb = measure(lambda: drop_cli.evaluate(path, out=folder, progress=False).results[0])
    total_gb = resident_gb + plain_mb / 1024
    met = seconds <= EVALUATE_TARGET_S and total_gb <= EVALUATE_TARGET_GB if full_size else None
    lines.append(
        {
            "job": "evaluate",
            "size": size,
            "seconds": seconds,
            "peak_growth_mb": plain_mb,
            "process_peak_gb": total_gb,
            "mAP": plain["mAP"],
            "check": verdict(met),
        }
    )
    print(_line(lines[-1]), flush=True)

    run = lambda: drop_cli.evaluate(path, rerank=True, out=folder, progress=False).results[0]  # noqa: E731
    re_ranked, seconds, peak_mb = measure(run)
    predicted_mb = (
        re_rank_embeddings_memory_bytes(num_query, num_gallery, len(NAMES) - 1, 512, held_output=False) / 2**20
    )
    total_gb = resident_gb + peak_mb / 1024
    ratio = seconds / floor
    met = total_gb <= RERANK_TARGET_GB and ratio <= RERANK_TARGET_RATIO if full_size else None
    own_mb = peak_mb - read_mb  # beyond reading the file
    lines.append(
        {
            "job": "evaluate --rerank",
            "size": size,
            "seconds": seconds,
            "peak_growth_mb": peak_mb,
            "process_peak_gb": total_gb,
            "mAP": re_ranked["mAP"],
            "floor_seconds": floor,
            "floor_ratio": ratio,
            "rerank_growth_mb": own_mb,
            "predicted_growth_mb": predicted_mb,
            "prediction_error": predicted_mb / own_mb - 1,
            "check": verdict(met),
        }
    )
    print(_line(lines[-1]), flush=True)
    path.unlink()
    return lines


def _line(line: dict) -> str:
    text = (
        f"{line['job']:<18} {line['size']:>18}  {line['seconds']:8.1f} s  peak +{line['peak_growth_mb']:7.0f} MB"
        f" (process {line['process_peak_gb']:.2f} GB)  mAP {100 * line['mAP']:.1f}"
    )
    if "floor_seconds" in line:
        text += (
            f"  floor {line['floor_seconds']:.1f} s (x{line['floor_ratio']:.2f})"
            f"  re-ranking +{line['rerank_growth_mb']:.0f} MB, predicted +{line['predicted_growth_mb']:.0f} MB"
            f" ({100 * line['prediction_error']:+.0f} %)"
        )
    return f"{text}  [{line['check']}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[12000, 25000, 50000, sum(MSMT17)],
        help="total images (queries + gallery) per run",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_out_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lines = [line for total in args.sizes for line in bench_size(total, args.seed, Path(folder))]
    if args.out:
        write_json(args.out, {"settings": settings(args), "results": lines})


if __name__ == "__main__":
    main()
