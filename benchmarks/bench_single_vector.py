"""Which single vector per image ranks best: the forms of ``Embeddings.single_vector`` against DROP's
visibility-aware part distance, on a features file's query and gallery.

A tracker (BoxMOT) or a vector index compares one vector per image by a dot product; DROP compares
K + 2 rows weighted by the parts seen in both. This scores each single-vector form by its cosine
distance under the Market-1501 protocol (rank-1, mAP), with the part distance as the reference.

    python benchmarks/bench_single_vector.py RUN/features.h5
    python benchmarks/bench_single_vector.py RUN/features.h5 --out single.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drop_cli.evaluation import evaluate_rank
from drop_cli.evaluation.scoring import make_setting, setting_distances
from drop_cli.features import FeatureFile
from drop_cli.inference.model import SINGLE_VECTORS, single_vector

if __package__:  # python -m benchmarks.bench_single_vector
    from ._report import add_out_option, settings, write_json
else:  # python benchmarks/bench_single_vector.py
    from _report import add_out_option, settings, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", type=Path)
    add_out_option(parser)
    args = parser.parse_args()
    file = FeatureFile(args.features)
    query, gallery = file.read("query"), file.read("gallery")

    def scores(distmat) -> dict:
        result = evaluate_rank(distmat, query.pids, gallery.pids, query.camids, gallery.camids)
        return {"rank1": float(result["cmc"][0]), "mAP": float(result["mAP"])}

    rows = {
        "part distance (drop evaluate)": scores(
            setting_distances(query, gallery, file.names, make_setting("parts+foreground"))
        )
    }
    for form in SINGLE_VECTORS:
        q = single_vector(query.embeddings, query.visibility, form)
        g = single_vector(gallery.embeddings, gallery.visibility, form)
        rows[form] = scores(1.0 - q @ g.T)
    print(f"{args.features}: {len(query.paths)} queries x {len(gallery.paths)} gallery")
    for name, row in rows.items():
        print(f"  {name:32s} rank-1 {100 * row['rank1']:5.1f}  mAP {100 * row['mAP']:5.1f}")
    if args.out:
        write_json(args.out, {"results": rows, "settings": settings(args)})


if __name__ == "__main__":
    main()
