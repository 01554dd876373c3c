"""Time the `pose` labeler in one process: label() on 200 crops of 128x256 into 128x64 maps.

Two runs: crops with a person (unoccluded synthetic pedestrians), which take the whole path, and noise crops, which stop right after the network (no person), so
their time is the network plus the input warp. Prints ms per image and images/s for each.

    python benchmarks/bench_pose.py [--threads 1] [--pose-model FILE] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from drop_cli.labels.labelers.pose import PoseLabeler
from drop_cli.labels.labelers.pose_model import pose_model_path
from drop_cli.synthetic import plan, render

if __package__:  # python -m benchmarks.bench_pose
    from ._report import add_out_option, settings, write_json
else:  # python benchmarks/bench_pose.py
    from _report import add_out_option, settings, write_json

NUM_CROPS = 200


def person_crops() -> list[np.ndarray]:
    """Unoccluded synthetic pedestrians (128x256 RGB) from all three splits."""
    items = plan(100, 0)[::4][:NUM_CROPS]
    return [render(dataclasses.replace(item, occluded=False), 100, 0)[0] for item in items]


def time_labels(labeler: PoseLabeler, crops: list[np.ndarray]) -> tuple[float, int]:
    """Seconds for labelling all crops, and how many were flagged."""
    labeler.label(crops[0], "warm-up")
    start = time.perf_counter()
    flagged = sum(labeler.label(crop, f"{i}.jpg").flags != 0 for i, crop in enumerate(crops))
    return time.perf_counter() - start, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pose-model", default=None)
    add_out_option(parser)
    args = parser.parse_args()
    model = pose_model_path(args.pose_model)
    labeler = PoseLabeler("eight", 128, 64, model, num_threads=args.threads)
    rng = np.random.default_rng(0)
    runs = {
        "person crops, whole label()": person_crops(),
        "noise crops, network only": list(rng.integers(0, 256, (NUM_CROPS, 256, 128, 3), dtype=np.uint8)),
    }
    results = {}
    for what, crops in runs.items():
        seconds, flagged = time_labels(labeler, crops)
        results[what] = {
            "seconds": seconds,
            "ms_per_image": 1000 * seconds / NUM_CROPS,
            "images_per_s": NUM_CROPS / seconds,
            "flagged_no_person": flagged,
        }
        print(
            f"{what}: {results[what]['ms_per_image']:.1f} ms/image, {results[what]['images_per_s']:.1f} images/s "
            f"({flagged}/{NUM_CROPS} flagged no_person, {args.threads} thread(s))"
        )
    if args.out:
        write_json(
            args.out, {"settings": settings(args), "pose_model_file": model, "crops": NUM_CROPS, "runs": results}
        )


if __name__ == "__main__":
    main()
