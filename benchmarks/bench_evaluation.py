"""Time drop's evaluation functions against plain numpy baselines, at the spec's sizes (section 9).

* evaluate_rank, Market-1501 size (3,368 x 15,913), against a vectorised full-argsort evaluation.
* re_rank, Market-1501 size (3,368 queries + 15,913 gallery), against the classic dense
  implementation of Zhong et al. (its structure: dense [N, N] matrices, loops over points) run at a
  reduced size (``--classic-scale``, default 0.25 of each side: its memory grows as N**2, about 8.5
  GB at full size); drop's re_rank is timed at both sizes.
* part_distance, Occluded-Duke size (2,210 x 17,661, 10 parts of 512), against a numpy version
  that materialises the [M, Nq, Ng] per-part distances.
* with ``--device cuda``: re_rank and part_distance on the GPU too, checked against the CPU results
  (after one untimed warm-up call, which pays for CUDA's start).

Inputs are synthetic (identity centres plus noise, Market-like labels with junk and distractors);
the baselines' outputs are checked against drop's. Peak memory is the growth of the resident set
during the call (Linux: VmHWM after a reset, freed heap memory first returned to the system so that
reusing it counts; elsewhere tracemalloc, numpy allocations only). At the full sizes, drop's CPU
rows are checked against their targets, printed below the table: evaluate_rank <= 1 s, re_rank
<= 6 s and 3 GB, part_distance <= 10 s.

    python benchmarks/bench_evaluation.py                      # everything, full size
    python benchmarks/bench_evaluation.py --only eval part     # a subset
    python benchmarks/bench_evaluation.py --scale 0.2          # every size x 0.2 (a quick run)
    python benchmarks/bench_evaluation.py --device cuda        # GPU rows as well
    python benchmarks/bench_evaluation.py --out evaluation.json   # also write the rows as JSON
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drop_cli.evaluation import UNSHARED_DISTANCE, evaluate_rank, part_distance, re_rank

if __package__:  # python -m benchmarks.bench_evaluation, or imported by the tests
    from ._report import add_out_option, settings, verdict, write_json
else:  # python benchmarks/bench_evaluation.py
    from _report import add_out_option, settings, verdict, write_json

MARKET = (3368, 15913)
OCCLUDED_DUKE = (2210, 17661)
PARTS, PART_DIM = 10, 512
# The targets of drop's CPU implementations at the full sizes above
EVALUATE_RANK_TARGET_S = 1.0
RE_RANK_TARGET_S, RE_RANK_TARGET_MB = 6.0, 3 * 1024
PART_DISTANCE_TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = ["eval", "rerank", "part"]
    parser.add_argument("--only", nargs="+", choices=parts, default=parts, help="run a subset")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every query and gallery count by this")
    parser.add_argument("--classic-scale", type=float, default=0.25, help="relative size of the classic re-ranking")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: time the GPU paths too")
    add_out_option(parser)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    if "eval" in args.only:
        rows += bench_evaluate(rng, scaled(MARKET, args.scale))
    if "rerank" in args.only:
        rows += bench_re_rank(rng, scaled(MARKET, args.scale), args.classic_scale, args.device == "cuda")
    if "part" in args.only:
        rows += bench_part_distance(rng, scaled(OCCLUDED_DUKE, args.scale), args.device == "cuda")
    print_table(rows)
    print_targets(rows)
    if args.out:
        write_json(args.out, {"settings": settings(args), "rows": rows})


def scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(2, round(size[0] * factor)), max(2, round(size[1] * factor))


# --- measuring ---------------------------------------------------------------------------------


def measure(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn`` once: (its result, seconds, peak memory growth in MB)."""
    gc.collect()
    if Path("/proc/self/clear_refs").exists():
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        before = _proc_status_kb("VmRSS")
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        return result, seconds, (_proc_status_kb("VmHWM") - before) / 1024
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def row(function: str, size: str, impl: str, seconds: float, peak_mb: float, check: str = "", **figures) -> dict:
    """One line of the table; ``figures``: the numbers behind ``check``, for the JSON only."""
    return {
        "function": function,
        "size": size,
        "impl": impl,
        "seconds": seconds,
        "peak_mb": peak_mb,
        "check": check,
        **figures,
    }


def with_target(line: dict, full_size: bool, target_s: float, target_peak_mb: float | None = None) -> dict:
    """``line`` with its targets and whether it meets them (None: not at the full size, not checked)."""
    line["target_s"] = target_s
    met = line["seconds"] <= target_s
    if target_peak_mb is not None:
        line["target_peak_mb"] = target_peak_mb
        met = met and line["peak_mb"] <= target_peak_mb
    line["meets_target"] = met if full_size else None
    return line


def print_table(rows: list[dict]) -> None:
    header = f"{'function':<15} {'size':<28} {'implementation':<34} {'seconds':>8} {'peak MB':>8}  check"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['function']:<15} {row['size']:<28} {row['impl']:<34} {row['seconds']:>8.2f} "
            f"{row['peak_mb']:>8.0f}  {row['check']}"
        )


def print_targets(rows: list[dict]) -> None:
    for row in rows:
        if "target_s" in row:
            memory = f" and {row['target_peak_mb'] / 1024:g} GB" if "target_peak_mb" in row else ""
            print(
                f"{row['function']} {row['size']}, {row['impl']}: {row['seconds']:.2f} s, {row['peak_mb']:.0f} MB "
                f"(target <= {row['target_s']:g} s{memory} at full size: {verdict(row['meets_target'])})"
            )


# --- synthetic inputs --------------------------------------------------------------------------


def market_like_labels(rng: np.random.Generator, num_query: int, num_gallery: int, num_ids: int = 751):
    """Labels shaped like Market-1501's: 6 cameras, ~18% junk (-1) and ~24% distractors (0) in the gallery."""
    g_pids = rng.integers(1, num_ids + 1, num_gallery)
    kind = rng.random(num_gallery)
    g_pids[kind < 0.18] = -1
    g_pids[(kind >= 0.18) & (kind < 0.42)] = 0
    q_pids = rng.integers(1, num_ids + 1, num_query)
    return q_pids, g_pids, rng.integers(0, 6, num_query), rng.integers(0, 6, num_gallery)


def embeddings(rng: np.random.Generator, pids: np.ndarray, centres: np.ndarray, noise: float) -> np.ndarray:
    """Unit vectors near their identity's centre ([N, ..., D] like ``centres[0]``); pid <= 0: random identity."""
    ids = np.where(pids > 0, pids, rng.integers(1, len(centres), len(pids)))
    emb = centres[ids] + noise * rng.standard_normal((len(pids), *centres.shape[1:]), dtype=np.float32)
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Na, Nb] float32 distances between unit vectors [Na, D] and [Nb, D]."""
    dist = a @ b.T
    dist *= -2.0
    dist += 2.0
    np.maximum(dist, 0.0, out=dist)
    return np.sqrt(dist, out=dist)


# --- evaluate_rank -------------------------------------------------------------------------------


def bench_evaluate(rng: np.random.Generator, size: tuple[int, int]) -> list[dict]:
    labels = market_like_labels(rng, *size)
    centres = rng.standard_normal((752, 128), dtype=np.float32)
    distmat = euclidean(embeddings(rng, labels[0], centres, 1.2), embeddings(rng, labels[1], centres, 1.2))
    ours, *ours_cost = measure(lambda: evaluate_rank(distmat, *labels))
    base, *base_cost = measure(lambda: argsort_evaluate(distmat, *labels))
    diff = max(np.abs(ours["cmc"] - base["cmc"]).max(), *(abs(ours[key] - base[key]) for key in ("mAP", "mINP")))
    # Random distances are the worst case of the histogram method: the last match is deep in every row.
    noise = rng.random(size, dtype=np.float32)
    _, *noise_cost = measure(lambda: evaluate_rank(noise, *labels))
    name = f"{size[0]} x {size[1]}"
    summary = f"mAP {ours['mAP']:.3f} rank-1 {ours['cmc'][0]:.3f} mINP {ours['mINP']:.3f}"
    metrics = {"mAP": ours["mAP"], "rank1": ours["cmc"][0], "mINP": ours["mINP"]}
    ours_row = row("evaluate_rank", name, "drop (histogram ranks)", *ours_cost, summary, **metrics)
    return [
        with_target(ours_row, size == MARKET, EVALUATE_RANK_TARGET_S),
        row("evaluate_rank", name, "drop, random distances", *noise_cost),
        row("evaluate_rank", name, "numpy full argsort", *base_cost, f"max diff {diff:.1e}", max_diff=diff),
    ]


def argsort_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """The usual vectorised evaluation: stable argsort of every row, gathered labels, cumulative sums."""
    order = np.argsort(distmat, axis=1, kind="stable")
    pids, camids = g_pids[order], g_camids[order]
    same_pid = pids == q_pids[:, None]
    kept = (pids != -1) & ~(same_pid & (camids == q_camids[:, None]))
    match = same_pid & kept
    rank = np.maximum(np.cumsum(kept, axis=1), 1)  # 1-based rank among kept images, where kept
    hits = np.cumsum(match, axis=1)
    valid = hits[:, -1] > 0
    rank, hits, match = rank[valid], hits[valid], match[valid]
    first = np.where(match, rank, np.iinfo(rank.dtype).max).min(axis=1)
    ap = np.where(match, hits / rank, 0.0).sum(axis=1) / hits[:, -1]
    inp = hits[:, -1] / np.where(match, rank, 0).max(axis=1)
    cmc = (first[:, None] <= np.arange(1, max_rank + 1)).mean(axis=0)
    return {"cmc": cmc, "mAP": ap.mean(), "mINP": inp.mean(), "num_valid_queries": int(valid.sum())}


# --- re_rank -------------------------------------------------------------------------------------


def bench_re_rank(rng: np.random.Generator, size: tuple[int, int], classic_scale: float, gpu: bool) -> list[dict]:
    q_pids, g_pids, _, _ = market_like_labels(rng, *size)
    centres = rng.standard_normal((752, 128), dtype=np.float32)
    q_emb, g_emb = embeddings(rng, q_pids, centres, 1.2), embeddings(rng, g_pids, centres, 1.2)
    inputs = euclidean(q_emb, g_emb), euclidean(q_emb, q_emb), euclidean(g_emb, g_emb)
    on_cpu, *full_cost = measure(lambda: re_rank(*inputs, device="cpu"))
    full_size = f"{size[0]} + {size[1]}"
    gpu_rows = []
    if gpu:
        re_rank(*(d[:100, :100] for d in inputs), device="cuda")  # warm-up
        on_gpu, *gpu_cost = measure(lambda: re_rank(*inputs, device="cuda"))
        gpu_diff = np.abs(on_gpu - on_cpu).max()
        check = f"max diff to CPU {gpu_diff:.1e}"
        gpu_rows = [row("re_rank", full_size, "drop (sparse), CUDA", *gpu_cost, check, max_diff=gpu_diff)]
    del inputs, on_cpu

    small_q, small_g = scaled(size, classic_scale)
    q_emb, g_emb = q_emb[:small_q], g_emb[:small_g]
    inputs = euclidean(q_emb, g_emb), euclidean(q_emb, q_emb), euclidean(g_emb, g_emb)
    ours, *ours_cost = measure(lambda: re_rank(*inputs, device="cpu"))
    classic, *classic_cost = measure(lambda: classic_re_rank(*inputs))
    growth = (sum(size) / (small_q + small_g)) ** 2
    diff = np.abs(ours - classic).max()
    check = f"max diff {diff:.1e}; x{growth:.0f} memory and x{growth:.0f}+ time at full size"
    full_row = row("re_rank", full_size, "drop (sparse)", *full_cost)
    return [
        with_target(full_row, size == MARKET, RE_RANK_TARGET_S, RE_RANK_TARGET_MB),
        *gpu_rows,
        row("re_rank", f"{small_q} + {small_g}", "drop (sparse)", *ours_cost),
        row(
            "re_rank",
            f"{small_q} + {small_g}",
            "classic dense (Zhong et al.)",
            *classic_cost,
            check,
            max_diff=diff,
            full_size_growth=growth,
        ),
    ]


def classic_re_rank(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """The published numpy re-ranking (Zhong et al.), structure for structure: dense [N, N] matrices, loops
    over points and its inverted index. The timing reference here and the oracle of tests/test_rerank.py."""
    num_query = q_g_dist.shape[0]
    dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))
    n = len(dist)
    weights = np.zeros_like(dist)
    rank = np.argsort(dist).astype(np.int32)

    def reciprocal_neighbours(point: int, k: int) -> np.ndarray:
        forward = rank[point, : k + 1]
        return forward[np.where(rank[forward, : k + 1] == point)[0]]

    for i in range(n):
        neighbours = reciprocal_neighbours(i, k1)
        expansion = neighbours
        for candidate in neighbours:
            candidate_neighbours = reciprocal_neighbours(candidate, int(np.around(k1 / 2.0)))
            if len(np.intersect1d(candidate_neighbours, neighbours)) > 2.0 / 3 * len(candidate_neighbours):
                expansion = np.append(expansion, candidate_neighbours)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        weights[i, expansion] = weight / np.sum(weight)
    dist = dist[:num_query]
    if k2 != 1:
        expanded = np.zeros_like(weights)
        for i in range(n):
            expanded[i] = np.mean(weights[rank[i, :k2], :], axis=0)
        weights = expanded
    inverted = [np.where(weights[:, k] != 0)[0] for k in range(n)]
    jaccard = np.zeros_like(dist)
    for i in range(num_query):
        min_sum = np.zeros(n, np.float32)
        for k in np.where(weights[i] != 0)[0]:
            points = inverted[k]
            min_sum[points] += np.minimum(weights[i, k], weights[points, k])
        jaccard[i] = 1 - min_sum / (2.0 - min_sum)
    return (jaccard * (1 - lambda_value) + dist * lambda_value)[:, num_query:]


# --- part_distance -------------------------------------------------------------------------------


def bench_part_distance(rng: np.random.Generator, size: tuple[int, int], gpu: bool) -> list[dict]:
    q_pids, g_pids, _, _ = market_like_labels(rng, *size, num_ids=702)
    centres = rng.standard_normal((703, PARTS, PART_DIM), dtype=np.float32)
    q_emb, g_emb = embeddings(rng, q_pids, centres, 1.5), embeddings(rng, g_pids, centres, 1.5)
    q_vis = (rng.random((size[0], PARTS)) < 0.6).astype(np.float32)
    g_vis = (rng.random((size[1], PARTS)) < 0.8).astype(np.float32)
    q_vis[:, 0] = g_vis[:, 0] = 1.0  # part 0 plays the foreground: always visible
    ours, *ours_cost = measure(lambda: part_distance(q_emb, q_vis, g_emb, g_vis, device="cpu"))
    base, *base_cost = measure(lambda: materialised_part_distance(q_emb, q_vis, g_emb, g_vis))
    name = f"{size[0]} x {size[1]} x {PARTS} x {PART_DIM}"
    diff = np.abs(ours - base).max()
    gpu_rows = []
    if gpu:
        part_distance(q_emb[:10], q_vis[:10], g_emb[:10], g_vis[:10], device="cuda")  # warm-up
        on_gpu, *gpu_cost = measure(lambda: part_distance(q_emb, q_vis, g_emb, g_vis, device="cuda"))
        gpu_diff = np.abs(on_gpu - ours).max()
        gpu_rows = [
            row(
                "part_distance",
                name,
                "drop (chunked, CUDA)",
                *gpu_cost,
                f"max diff to CPU {gpu_diff:.1e}",
                max_diff=gpu_diff,
            )
        ]
    ours_row = row("part_distance", name, "drop (chunked, CPU)", *ours_cost)
    return [
        with_target(ours_row, size == OCCLUDED_DUKE, PART_DISTANCE_TARGET_S),
        *gpu_rows,
        row("part_distance", name, "numpy [M, Nq, Ng] materialised", *base_cost, f"max diff {diff:.1e}", max_diff=diff),
    ]


def materialised_part_distance(q_emb, q_vis, g_emb, g_vis) -> np.ndarray:
    """Every part's [Nq, Ng] distances stacked, then the visibility-weighted mean (as BPBreID does)."""
    parts = range(q_emb.shape[1])
    dist = np.stack([np.sqrt(np.maximum(2.0 - 2.0 * q_emb[:, m] @ g_emb[:, m].T, 0.0)) for m in parts])
    weight = q_vis.T[:, :, None] * g_vis.T[:, None, :]
    total = weight.sum(axis=0)
    mean = (dist * weight).sum(axis=0) / np.maximum(total, 1e-12)
    return np.where(total > 0, mean, UNSHARED_DISTANCE).astype(np.float32)


if __name__ == "__main__":
    main()
