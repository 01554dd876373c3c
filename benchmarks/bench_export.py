"""Images/s of a trained model through PyTorch and through its ONNX export in onnxruntime, on this CPU.

Builds the paper recipe's network (``--recipe``, default ``occluded_duke``: HRNet-W32 at 256 x 128,
initial weights with BatchNorm statistics of one batch: speed does not depend on them), saves it as a drop checkpoint, exports it with
``drop export`` (which checks the file against PyTorch), then times ``ReidModel.embed`` on
preprocessed batches of 1 and 32 (``--batches``) for both runtimes: best and median of ``--repeat``
runs after a warm-up (flip test-time augmentation included, as the recipe embeds). Prints images/s
and the onnxruntime / PyTorch ratio.

    python benchmarks/bench_export.py                        # a few minutes on 2 cores
    python benchmarks/bench_export.py --recipe synthetic     # the small CPU recipe's network
    python benchmarks/bench_export.py --half --out export.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from drop_cli.inference import ReidModel, export_onnx
from drop_cli.inference.export import check_crops
from drop_cli.model import build_model
from drop_cli.parts import part_names
from drop_cli.recipe import load_recipe
from drop_cli.train.checkpoint import save_checkpoint

if __package__:  # python -m benchmarks.bench_export
    from ._report import add_out_option, settings, write_json
else:  # python benchmarks/bench_export.py
    from _report import add_out_option, settings, write_json


def checkpoint(recipe_name: str, folder: Path) -> Path:
    recipe = load_recipe(recipe_name)
    model = build_model(
        751,
        len(part_names(recipe.data.preset)),
        ppe_height=recipe.data.height // 4,
        **{**dataclasses.asdict(recipe.model), "pretrained": False, "weights": None},
    )
    # BatchNorm statistics of real activations (not the initial 0 and 1, with which float16 overflows
    # in a deep untrained network): one batch of noise, averaged cumulatively.
    torch.manual_seed(0)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(16, 3, recipe.data.height, recipe.data.width))
    for m in norms:
        m.momentum = 0.1
    path = folder / "last.pt"
    save_checkpoint(path, recipe=recipe.to_dict(), model=model.state_dict(), num_classes=751, epoch=0, history=[])
    return path


def images_per_s(model: ReidModel, batch: torch.Tensor, repeat: int) -> tuple[float, float]:
    """(best, median) images/s of the runtime alone on a preprocessed batch."""
    model.run(batch)  # warm-up: first-call allocations, onnxruntime's graph optimisation
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        model.run(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / min(times), len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="occluded_duke")
    parser.add_argument("--batches", default="1,32", help="batch sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--half", action="store_true", help="time the float16 export too")
    add_out_option(parser)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = checkpoint(args.recipe, Path(tmp))
        exports = {"float32": export_onnx(ckpt, Path(tmp) / "model.onnx")}
        if args.half:
            exports["float16"] = export_onnx(ckpt, Path(tmp) / "half.onnx", half=True)
        for dtype, result in exports.items():
            print(
                f"export {dtype}: {result.seconds:.1f} s, max abs difference {result.max_abs_diff['embeddings']:.2e}, "
                f"top-10 overlap {result.ranking_overlap:.2f}"
            )
        runtimes = {"pytorch": ReidModel.load(ckpt, device="cpu")}
        runtimes.update({f"onnxruntime {d}": ReidModel.load(r.onnx, device="cpu") for d, r in exports.items()})
        for size in (int(b) for b in args.batches.split(",")):
            crops = check_crops(size, seed=1)
            batch = runtimes["pytorch"].preprocess((crops * size)[:size])
            rates = {name: images_per_s(model, batch, args.repeat) for name, model in runtimes.items()}
            for name, (best, median) in rates.items():
                ratio = median / rates["pytorch"][1]
                print(f"batch {size:3d}  {name:20s} {median:8.1f} images/s (best {best:.1f}), x{ratio:.2f} of PyTorch")
                results.append({"batch": size, "runtime": name, "images_per_s": median, "best": best, "ratio": ratio})
    if args.out:
        write_json(args.out, {"results": results, "settings": settings(args), "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
