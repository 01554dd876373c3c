"""Synthetic-data generation speed in one process: plan, render, and the writer's JPEG encoding.

Times `plan` once, then `render` and `cv2.imencode` (quality 95, as `drop make-synthetic` writes
them) over ``--images`` items spread over the three splits, and prints images/s for render alone and with
encoding; then times the whole `make_synthetic` writer (files and ground truth) end to end, checked
against its target (>= 300 images/s) at ``--ids 100``.

    python benchmarks/bench_synthetic.py --images 500 --ids 100 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2

from drop_cli.api import make_synthetic
from drop_cli.synthetic import plan, render

if __package__:  # python -m benchmarks.bench_synthetic
    from ._report import add_out_option, settings, verdict, write_json
else:  # python benchmarks/bench_synthetic.py
    from _report import add_out_option, settings, verdict, write_json

WRITER_TARGET_IMAGES_PER_S, WRITER_TARGET_IDS = 300.0, 100  # drop make-synthetic --ids 100


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
    add_out_option(parser)
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
    result = {
        "plan_ms": plan_s * 1e3,
        "images": n,
        "occluded": occluded,
        "opencv_threads": cv2.getNumThreads(),
        "render_ms_per_image": render_s / n * 1e3,
        "render_images_per_s": n / render_s,
        "render_encode_ms_per_image": (render_s + encode_s) / n * 1e3,
        "render_encode_images_per_s": n / (render_s + encode_s),
    }
    print(f"plan: {result['plan_ms']:.1f} ms for {args.ids} ids")
    print(f"{n} images ({occluded} occluded), OpenCV threads: {result['opencv_threads']}")
    print(
        f"render:          {result['render_ms_per_image']:.2f} ms/image  {result['render_images_per_s']:7.0f} images/s"
    )
    print(
        f"render + encode: {result['render_encode_ms_per_image']:.2f} ms/image  "
        f"{result['render_encode_images_per_s']:7.0f} images/s"
    )
    result["writer"] = [time_writer(args.ids, args.seed, workers) for workers in args.writer_workers]
    for run in result["writer"]:
        print(
            f"drop make-synthetic --ids {args.ids} --workers {run['workers']}: {run['images']} images (JPEG files + "
            f"ground truth) in {run['seconds']:.1f} s, {run['images_per_s']:.0f} images/s "
            f"(target >= {WRITER_TARGET_IMAGES_PER_S:.0f} at --ids {WRITER_TARGET_IDS}: {verdict(run['meets_target'])})"
        )
    if args.out:
        write_json(args.out, {"settings": settings(args), **result})


def time_writer(ids: int, seed: int, workers: int) -> dict:
    """The whole make_synthetic writer, end to end, against its target (None: not at the target's --ids)."""
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        made = make_synthetic(root, ids=ids, seed=seed, workers=workers, progress=False)
        seconds = time.perf_counter() - start
    images = sum(made.images.values())
    rate = images / seconds
    return {
        "workers": workers,
        "images": images,
        "seconds": seconds,
        "images_per_s": rate,
        "target_images_per_s": WRITER_TARGET_IMAGES_PER_S,
        "meets_target": rate >= WRITER_TARGET_IMAGES_PER_S if ids == WRITER_TARGET_IDS else None,
    }


if __name__ == "__main__":
    main()
