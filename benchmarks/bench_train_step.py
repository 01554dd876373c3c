"""Time a training step: DROP against the BPBreID-equivalent, both from the shipped recipes, same run.

One training step is ``drop_cli.train.step.train_step``, what ``drop train`` runs: forward, the
recipe's whole objective (GiLt; for DROP also PCT with a filled parts memory bank, in the memory
regime, and the smoothed parsing loss), backward, an Adam step and the memory bank's update, on
random images, identities and part maps, with random (not pretrained) weights. The configurations
are the ``occluded_duke`` recipe and it stacked with ``ablations/bpbreid``. Each configuration runs in its own subprocess so
that its peak memory (``ru_maxrss``) is its own; configurations alternate over ``--rounds``. The
table gives the median wall-clock and CPU time of the timed steps (CPU time is the steadier figure
on a shared machine), images/s, the peak resident memory of the process and its growth during the
steps over the memory held once the model was built, and every step's wall time. The last line is
DROP's step time over the baseline's (target: <= 1.25).

    python -m benchmarks.bench_train_step [--backbone hrnet_w32] [--batch 16] [--steps 3] [--rounds 1] [--threads 2]
    python -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5   # GPU: bf16 autocast,
                                                                                          # channels_last, GPU memory
    python -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5 --compile reduce-overhead

``--ops`` adds the number of ATen operators one forward, loss and backward dispatch (the optimizer
not included): on a GPU, where the step is bound by launching kernels, each is about one launch, so
the count measures that cost on any machine.

``--compile MODE`` is ``drop train --set train.compile=MODE``: the model's forward (and so its
backward) under torch.compile, through the same ``drop_cli.train.step.compiled``; ``reduce-overhead``
also replays them as CUDA graphs, so HRNet's ~4,400 operators of the launch-bound GPU step cost a few
launches. Compiling happens in the warm-up steps (give ``--warmup`` 3 or more).

(from the repository root). On an idle 2-core CPU hrnet_w32 at 256x128 trains at about 3 images/s:
the defaults (1 warm-up and 3 timed steps of 16 images per configuration) take about a minute per
configuration. When other processes share the cores, ``--threads 1`` avoids the stalls of
oversubscribed OpenMP threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from drop_cli.model import build_model
from drop_cli.recipe import load_recipe
from drop_cli.train.loop import amp_dtype
from drop_cli.train.objective import Objective
from drop_cli.train.step import StepContext, compiled, forward_backward, train_step

# Name -> the recipe files stacked (drop train --recipe ... --recipe ...).
CONFIGS = {
    "BPBreID-equivalent": ["occluded_duke", "ablations/bpbreid"],
    "DROP": ["occluded_duke"],
}
TARGET_RATIO = 1.25  # DROP's step over the BPBreID-equivalent's
TARGET_GPU_IMAGES_S = 1500  # DROP's step, hrnet_w32 256x128 batch 64 on one H100


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Build one configuration and time its training steps (in this process)."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    recipe = load_recipe(
        CONFIGS[name],
        [
            "model.pretrained=false",
            f"model.backbone={args.backbone}",
            f"data.height={args.height}",
            f"data.width={args.width}",
            f"train.compile={args.compile}",
        ],
    )
    dtype = amp_dtype(device, recipe.train.amp)  # bf16 (or fp16) on CUDA, full precision on CPU
    model = (
        build_model(args.classes, args.parts, ppe_height=args.height // 4, **dataclasses.asdict(recipe.model))
        .train()
        .to(device)
    )
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, fused=cuda)  # as drop train
    objective = Objective(recipe.loss)
    num_images = args.batch * 8
    bank = objective.memory_bank(num_images, args.parts, recipe.model.embed_dim)
    if bank is not None:  # filled: the memory regime, as after warm-up
        bank.to(device).update(
            torch.arange(num_images, device=device),
            torch.randn(num_images, args.parts, recipe.model.embed_dim, device=device),
            torch.ones(num_images, args.parts, dtype=torch.bool, device=device),
            torch.arange(num_images, device=device) // 4 % args.classes,
        )
    context = StepContext(
        objective=objective,
        device=device,
        autocast_dtype=dtype,
        channels_last=recipe.train.channels_last,
        bank=bank,
        use_memory=bank is not None,
        scaler=torch.amp.GradScaler() if dtype == torch.float16 else None,
    )
    batch = {
        "image": torch.randn(args.batch, 3, args.height, args.width, device=device),
        "labels": torch.randint(
            0, args.parts + 1, (args.batch, args.height, args.width), dtype=torch.uint8, device=device
        ),
        "pid": (torch.arange(args.batch) // 4 % args.classes).to(device),
        "index": torch.arange(args.batch, device=device),
    }
    held_mb = _max_rss_mb()
    step_model = compiled(model, recipe.train.compile)

    def step() -> None:
        train_step(step_model, batch, context, optimizer)
        if cuda:
            torch.cuda.synchronize()

    wall, cpu = [], []
    for index in range(args.warmup + args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if index >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    result = {
        "name": name,
        "recipe": CONFIGS[name],
        "steps_s": wall,
        "cpu_steps_s": cpu,
        "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else _max_rss_mb(),
        "step_peak_mb": _max_rss_mb() - held_mb,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }
    if args.profile:
        result["profile"] = _profile(step, 3, cuda)
    if args.ops:
        optimizer.zero_grad(set_to_none=True)
        result["operators"] = _count_operators(lambda: forward_backward(model, batch, context))
    return result


def _count_operators(run) -> int:
    """ATen operators dispatched while ``run()`` runs (views and in-place ops included)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with Count() as count:
        run()
    return count.calls


def _profile(step, steps: int, cuda: bool) -> str:
    """torch.profiler over ``steps`` steps: the top operators by device (else CPU) time, and the share of
    the wall time the device was busy (low: the step is bound by launching kernels, not by the GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    wall_us = (time.perf_counter() - start) * 1e6
    events = prof.key_averages()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    busy = sum(getattr(e, sort) for e in events)
    kernels = sum(e.count for e in events if cuda and e.self_device_time_total > 0)
    return (
        events.table(sort_by=sort, row_limit=25)
        + f"\n{'device' if cuda else 'CPU'} busy {busy / wall_us:.0%} of {wall_us / steps / 1e3:.1f} ms per step; "
        f"{kernels / steps:.0f} operators with device time per step"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--classes", type=int, default=702, help="training identities (Occluded-Duke: 702)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each configuration")
    parser.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="cuda: bf16/fp16 autocast and channels_last as in training; peak = GPU memory",
    )
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per configuration")
    parser.add_argument("--ops", action="store_true", help="also count the ATen operators of a forward + backward")
    parser.add_argument(
        "--compile",
        choices=["off", "default", "reduce-overhead", "max-autotune"],
        default="off",
        help="train.compile: torch.compile the forward (reduce-overhead: with CUDA graphs)",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    print(
        f"{args.backbone} at {args.height}x{args.width}, batch {args.batch}, K={args.parts}, "
        f"{args.warmup} warm-up + {args.steps} timed steps x {args.rounds} round(s), {args.threads} thread(s)"
        + (f", torch.compile mode {args.compile}" if args.compile != "off" else "")
    )
    results: dict[str, dict] = {}
    for _ in range(args.rounds):  # configurations alternate, so a busy spell on a shared machine hits both
        for name in args.configs:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_train_step", *sys.argv[1:], "--child", name],
                check=True,
                capture_output=True,
                text=True,
            )
            run = json.loads(child.stdout.strip().splitlines()[-1])
            if name in results:
                merged = results[name]
                merged["steps_s"] += run["steps_s"]
                merged["cpu_steps_s"] += run["cpu_steps_s"]
                merged["peak_mb"] = max(merged["peak_mb"], run["peak_mb"])
                merged["step_peak_mb"] = max(merged["step_peak_mb"], run["step_peak_mb"])
            else:
                results[name] = run
    for r in results.values():
        r["step_s"], r["cpu_s"] = statistics.median(r["steps_s"]), statistics.median(r["cpu_steps_s"])
        r["images_per_s"] = args.batch / r["step_s"]
    print(
        f"{'configuration':<20} {'params':>8} {'step':>8} {'CPU time':>9} {'images/s':>9} {'peak mem':>10} "
        f"{'step peak':>10}  steps"
    )
    for r in results.values():
        print(
            f"{r['name']:<20} {r['params_m']:>7.1f}M {r['step_s']:>7.2f}s {r['cpu_s']:>8.2f}s "
            f"{r['images_per_s']:>9.2f} "
            f"{r['peak_mb']:>8.0f}MB {r['step_peak_mb']:>8.0f}MB  "
            + " ".join(f"{t:.2f}" for t in r["steps_s"])
            + (f"  ({r['operators']:,} operators per forward + backward)" if "operators" in r else "")
        )
    for r in results.values():
        if "profile" in r:
            print(f"\n{r['name']}\n{r['profile']}")
    summary = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "results": {name: {k: v for k, v in r.items() if k != "profile"} for name, r in results.items()},
    }
    if len(results) == len(CONFIGS):
        base, drop = results["BPBreID-equivalent"], results["DROP"]
        ratio = drop["step_s"] / base["step_s"]
        summary.update(
            {
                "ratio": ratio,
                "cpu_ratio": drop["cpu_s"] / base["cpu_s"],
                "target_ratio": TARGET_RATIO,
                "meets_target": ratio <= TARGET_RATIO,
            }
        )
        print(
            f"DROP step / BPBreID-equivalent step: {ratio:.2f}x wall, {summary['cpu_ratio']:.2f}x CPU time "
            f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'})"
        )
    if args.device == "cuda" and "DROP" in results:
        rate = results["DROP"]["images_per_s"]
        summary.update({"target_gpu_images_s": TARGET_GPU_IMAGES_S, "meets_gpu_target": rate >= TARGET_GPU_IMAGES_S})
        print(
            f"DROP on {torch.cuda.get_device_name(0)}: {rate:.0f} images/s "
            f"(target >= {TARGET_GPU_IMAGES_S} on one H100: {'met' if rate >= TARGET_GPU_IMAGES_S else 'NOT met'})"
        )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
