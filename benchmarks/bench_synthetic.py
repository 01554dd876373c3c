"""Synthetic-data generation speed in one process: plan, render, and the writer's JPEG encoding.

Times `plan` once, then `render` and `cv2.imencode` (quality 95, as `drop make-synthetic` writes
them) over ``--images`` items spread over the three splits, and prints images/s for render alone and with
encoding; then times the whole `make_synthetic` writer (files and ground truth) end to end.

    python benchmarks/bench_synthetic.py --images 500 --ids 100
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2

from drop_cli.api import make_synthetic
from drop_cli.synthetic import plan, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument(
        "--cv-threads",
        type=int,
        default=None,
        help="cv2.setNumThreads (default: leave OpenCV's own; worker processes may use 1)",
    )
    parser.add_argument(
        "--writer-workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also time the whole make_synthetic writer with these worker counts",
    )
    args = parser.parse_args()
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)

    start = time.perf_counter()
    items = plan(args.ids, args.seed)
    plan_s = time.perf_counter() - start
    items = items[:: max(1, len(items) // args.images)][: args.images]  # all three splits
    occluded = sum(it.occluded for it in items)
    render(items[0], args.ids, args.seed)  # warm the identity, camera and noise caches

    render_s = encode_s = 0.0
    for item in items:
        t0 = time.perf_counter()
        image, _ = render(item, args.ids, args.seed)
        t1 = time.perf_counter()
        ok, _ = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        encode_s += time.perf_counter() - t1
        render_s += t1 - t0
        assert ok

    n = len(items)
    print(f"plan: {plan_s * 1e3:.1f} ms for {args.ids} ids")
    print(f"{n} images ({occluded} occluded), OpenCV threads: {cv2.getNumThreads()}")
    print(f"render:          {render_s / n * 1e3:.2f} ms/image  {n / render_s:7.0f} images/s")
    print(f"render + encode: {(render_s + encode_s) / n * 1e3:.2f} ms/image  {n / (render_s + encode_s):7.0f} images/s")
    for workers in args.writer_workers:
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            made = make_synthetic(root, ids=args.ids, seed=args.seed, workers=workers, progress=False)
            seconds = time.perf_counter() - t0
        total = sum(made.images.values())
        print(
            f"drop make-synthetic --ids {args.ids} --workers {workers}: {total} images (JPEG files + ground "
            f"truth) in {seconds:.1f} s, {total / seconds:.0f} images/s"
        )


if __name__ == "__main__":
    main()
