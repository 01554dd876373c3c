"""`drop index` and indexed search at up to a million gallery crops: build time, memory, query latency, recall.

The gallery is clustered synthetic embeddings (`drop_cli.synthetic.embeddings`: identities of 20
crops, 10 rows of 512, 30 % of the parts hidden, float16 as `drop embed --half` stores them) in a
features file written to ``--folder``, plus ``--grow`` more crops after them. Measured:

* ``build``: `drop_cli.index.build_index` of the first N crops (training the quantizer, reading the
  file, adding every vector); targets at a million: <= 10 min.
* ``grow``: the same call once the file holds ``--grow`` more crops: only they are added (no
  training, no rebuild).
* ``search``: a `GallerySearch` (kept, as a server keeps it) called one query at a time (the index's candidates read from the file and
  re-scored with DROP's exact distance, parts + foreground, visibility-weighted): p50 and p99 over
  the queries; targets at a million: p50 <= 50 ms, p99 <= 200 ms, and index + candidates <= 3 GB
  (the process peak while searching, index loaded; the features file is read, not held).
* ``recall@10``: of the exhaustive ranking by the same distance over the whole gallery; target >= 0.98.

``--noise`` sets how far an image's rows lie from its identity's (the prototype's length being 1):
at 2 the exhaustive top 10 are the query's identity, at 3 about a fifth of them are other
identities that the distance's noise brings close, at 4 most are (see README "Scale": no index
finds those; the exhaustive search is then the honest tool).

    python benchmarks/bench_index.py --images 1000000 --out assets/bench_index.json
    python benchmarks/bench_index.py --images 100000 --noise 3
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from drop_cli.evaluation.distance import part_distance
from drop_cli.features.file import FeatureFile, write_features
from drop_cli.features.rows import SplitRows
from drop_cli.index import CANDIDATES, GalleryIndex, GallerySearch, build_index
from drop_cli.parts import part_names, row_names
from drop_cli.synthetic.embeddings import clustered_embeddings

if __package__:
    from ._report import add_out_option, settings, verdict, write_json
    from .bench_evaluation import _proc_status_kb, measure
else:
    from _report import add_out_option, settings, verdict, write_json
    from bench_evaluation import _proc_status_kb, measure

NAMES = row_names(part_names("eight"))
ROWS = slice(1, len(NAMES))  # parts + foreground
IMAGES_PER_ID = 20
TARGETS = {"build_s": 600.0, "memory_gb": 3.0, "p50_ms": 50.0, "p99_ms": 200.0, "recall": 0.98}


def make_file(path: Path, images: int, grow: int, queries: int, noise: float, seed: int) -> None:
    total = queries + images + grow
    data = clustered_embeddings(total, max(1, total // IMAGES_PER_ID), noise=noise, seed=seed, dtype=np.float16)
    write_features(
        path, {"query": data.take(slice(0, queries)), "gallery": data.take(slice(queries, None))}, NAMES, {}, "float16"
    )


def exhaustive_top(path: Path, query: np.ndarray, query_vis: np.ndarray, k: int = 10) -> np.ndarray:
    """[Nq, k] gallery rows of the exact ranking (ties in gallery order), the gallery read in blocks."""
    with h5py.File(path, "r") as f:
        embeddings, visibility = f["gallery"]["embeddings"], f["gallery"]["visibility"][()]
        blocks = []
        for start in range(0, len(visibility), 65536):
            rows = slice(start, start + 65536)
            block = np.asarray(embeddings[rows][:, ROWS], np.float32)
            blocks.append(part_distance(query[:, ROWS], query_vis[:, ROWS], block, visibility[rows, ROWS], "cpu"))
    distances = np.concatenate(blocks, axis=1)
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000, help="gallery crops indexed first")
    parser.add_argument("--grow", type=int, default=10_000, help="crops added to the grown index")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--candidates", type=int, default=CANDIDATES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="where the features file is kept (default: a temporary one)")
    add_out_option(parser)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_index_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"gallery-{args.images}-{args.grow}-noise{args.noise:g}-seed{args.seed}.h5"
    if not path.exists():
        start = time.perf_counter()
        make_file(path, args.images, args.grow, args.queries, args.noise, args.seed)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.1f} GB) in {time.perf_counter() - start:.0f} s", flush=True)
    gc.collect()
    full = args.images >= 1_000_000
    resident_gb = _proc_status_kb("VmRSS") / 2**20
    index_file = folder / "gallery.index"

    built, build_s, build_mb = measure(
        lambda: build_index(path, out=index_file, rebuild=True, upto=args.images, progress=False)
    )
    grown, grow_s, _ = measure(lambda: build_index(path, out=index_file, progress=False))
    assert grown.added == args.grow and not grown.trained

    file = FeatureFile(path)
    query = file.read("query")
    latencies, results = [], []

    def search_all() -> None:
        with SplitRows(file, "gallery") as gallery:
            search = GallerySearch(GalleryIndex.load(index_file), gallery)  # as a server keeps it
            for q in range(len(query.pids)):
                start = time.perf_counter()
                results.append(
                    search(
                        query.embeddings[q : q + 1],
                        query.visibility[q : q + 1],
                        top=10,
                        candidates=args.candidates,
                    )[0][0]
                )
                latencies.append(time.perf_counter() - start)

    resident_search_gb = _proc_status_kb("VmRSS") / 2**20
    _, _, search_mb = measure(search_all)
    exact = exhaustive_top(path, query.embeddings, query.visibility)
    recall = float(np.mean([len(np.intersect1d(exact[q], results[q])) / 10 for q in range(len(exact))]))
    with h5py.File(path, "r") as f:
        same_id = float((f["gallery"]["pids"][()][exact] == query.pids[:, None]).mean())
    p50, p99 = (float(np.percentile(latencies, p)) * 1000 for p in (50, 99))
    search_gb = resident_search_gb + search_mb / 1024
    checks = {
        "build": build_s <= TARGETS["build_s"],
        "memory": search_gb <= TARGETS["memory_gb"],
        "p50": p50 <= TARGETS["p50_ms"],
        "p99": p99 <= TARGETS["p99_ms"],
        "recall": recall >= TARGETS["recall"],
    }
    result = {
        "images": args.images,
        "grow": args.grow,
        "noise": args.noise,
        "candidates": args.candidates,
        "factory": built.factory,
        "dim": built.dim,
        "index_mb": built.index_bytes / 2**20,
        "features_gb": path.stat().st_size / 2**30,
        "build_s": build_s,
        "build_peak_gb": resident_gb + build_mb / 1024,
        "grow_s": grow_s,
        "search_p50_ms": p50,
        "search_p99_ms": p99,
        "search_peak_gb": search_gb,
        "recall_at_10": recall,
        "exact_top10_same_identity": same_id,
        "checks": {name: verdict(met if full else None) for name, met in checks.items()},
    }
    print(
        f"{args.images:,} crops (noise {args.noise:g}, {built.factory}, {result['index_mb']:.0f} MB index): "
        f"build {build_s:.0f} s (peak {result['build_peak_gb']:.2f} GB), +{args.grow:,} in {grow_s:.1f} s; "
        f"search p50 {p50:.1f} ms, p99 {p99:.1f} ms, peak {search_gb:.2f} GB; recall@10 {recall:.3f} "
        f"with {args.candidates} candidates; exact top 10 of the query's identity {same_id:.2f}"
    )
    print("checks:", result["checks"])
    if args.out:
        write_json(args.out, {"results": [result], "settings": settings(args)})


if __name__ == "__main__":
    main()
