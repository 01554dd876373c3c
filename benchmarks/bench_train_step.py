"""Time a DropNet training step: full DROP against the BPBreID-equivalent switches, same run.

One training step = forward, the identity and parsing losses (``drop_cli.losses``: label-smoothed
cross-entropy on the three classifiers, smoothed parsing cross-entropy x 0.35), backward and an
Adam step, on random images, identities and
part maps, with random (not pretrained) weights. Each configuration runs in its own subprocess so
that its peak memory (``ru_maxrss``) is its own; configurations alternate over ``--rounds``. The
table gives the median wall-clock and CPU time of the timed steps (CPU time is the steadier figure
on a shared machine), images/s, the peak resident memory of the process and its growth during the
steps over the memory held once the model was built, and every step's wall time. The last line is
DROP's step time over the baseline's (target: <= 1.25).

    python -m benchmarks.bench_train_step [--backbone hrnet_w32] [--batch 16] [--steps 3] [--rounds 1] [--threads 2]
    python -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5   # GPU: bf16 autocast,
                                                                                          # channels_last, GPU memory
    python -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5 --graphs

``--ops`` adds the number of ATen operators one forward, loss and backward dispatch (the optimizer
not included): on a GPU, where the step is bound by launching kernels, each is about one launch, so
the count measures that cost on any machine.

``--graphs`` is an experiment for the launch-bound GPU step (``drop train`` does not do it): the
backbone's forward and backward are captured once as CUDA graphs (``torch.cuda.make_graphed_callables``,
autocast without its cast cache) and replayed every step, so its ~4,400 operators cost one launch each
way; the head, the losses and the optimizer stay eager.

(from the repository root). On an idle 2-core CPU hrnet_w32 at 256x128 trains at about 3 images/s:
the defaults (1 warm-up and 3 timed steps of 16 images per configuration) take about a minute per
configuration. When other processes share the cores, ``--threads 1`` avoids the stalls of
oversubscribed OpenMP threads.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from drop_cli.losses import identity_loss, parsing_loss
from drop_cli.model import build_model
from drop_cli.train.loop import amp_dtype

# Name -> model switches. The baseline is BPBreID's head: the parsing head reads F, average pooling.
CONFIGS = {
    "BPBreID-equivalent": {"decouple": False, "dpu": False, "ppe": False, "pooling": "avg"},
    "DROP": {"decouple": True, "dpu": True, "ppe": True, "pooling": "avg+max"},
}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _loss(out, pids: torch.Tensor, part_maps: torch.Tensor) -> torch.Tensor:
    return sum(identity_loss(out.id_logits, pids).values()) + 0.35 * parsing_loss(out.parsing_logits, part_maps)


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Build one configuration and time its training steps (in this process)."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = amp_dtype(device, enabled=True)  # bf16 (or fp16) on CUDA, full precision on CPU
    model = build_model(args.classes, args.parts, backbone=args.backbone, **CONFIGS[name]).train().to(device)
    images = torch.randn(args.batch, 3, args.height, args.width, device=device)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, fused=cuda)  # as drop train
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    pids = (torch.arange(args.batch) // 4 % args.classes).to(device)
    part_maps = torch.randint(0, args.parts + 1, (args.batch, args.height // 4, args.width // 4), device=device)
    held_mb = _max_rss_mb()
    if args.graphs:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False):
            model.backbone = torch.cuda.make_graphed_callables(model.backbone, (images,))

    def forward_backward() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=not args.graphs):
            out = model(images)
        loss = _loss(out, pids, part_maps)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()

    def step() -> None:
        forward_backward()
        scaler.step(optimizer)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()

    wall, cpu = [], []
    for index in range(args.warmup + args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if index >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    result = {"name": name, "steps_s": wall, "cpu_steps_s": cpu,
              "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else _max_rss_mb(),
              "step_peak_mb": _max_rss_mb() - held_mb, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if args.profile:
        result["profile"] = _profile(step, 3, cuda)
    if args.ops:
        result["operators"] = _count_operators(forward_backward)
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
    return (events.table(sort_by=sort, row_limit=25) +
            f"\n{'device' if cuda else 'CPU'} busy {busy / wall_us:.0%} of {wall_us / steps / 1e3:.1f} ms per step; "
            f"{kernels / steps:.0f} operators with device time per step")


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
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: bf16/fp16 autocast and channels_last as in training; peak = GPU memory")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per configuration")
    parser.add_argument("--ops", action="store_true", help="also count the ATen operators of a forward + backward")
    parser.add_argument("--graphs", action="store_true", help="CUDA only: replay the backbone as captured CUDA graphs")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.graphs and args.device != "cuda":
        parser.error("--graphs needs --device cuda (CUDA graphs)")
    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    print(f"{args.backbone} at {args.height}x{args.width}, batch {args.batch}, K={args.parts}, "
          f"{args.warmup} warm-up + {args.steps} timed steps x {args.rounds} round(s), {args.threads} thread(s)"
          + (", backbone as CUDA graphs" if args.graphs else ""))
    results: dict[str, dict] = {}
    for _ in range(args.rounds):  # configurations alternate, so a busy spell on a shared machine hits both
        for name in args.configs:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_train_step", *sys.argv[1:], "--child", name],
                check=True, capture_output=True, text=True)
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
    print(f"{'configuration':<20} {'params':>8} {'step':>8} {'CPU time':>9} {'images/s':>9} {'peak mem':>10} "
          f"{'step peak':>10}  steps")
    for r in results.values():
        print(f"{r['name']:<20} {r['params_m']:>7.1f}M {r['step_s']:>7.2f}s {r['cpu_s']:>8.2f}s "
              f"{r['images_per_s']:>9.2f} "
              f"{r['peak_mb']:>8.0f}MB {r['step_peak_mb']:>8.0f}MB  " + " ".join(f"{t:.2f}" for t in r["steps_s"])
              + (f"  ({r['operators']:,} operators per forward + backward)" if "operators" in r else ""))
    for r in results.values():
        if "profile" in r:
            print(f"\n{r['name']}\n{r['profile']}")
    if len(results) < len(CONFIGS):
        return
    base, drop = results["BPBreID-equivalent"], results["DROP"]
    print(f"DROP step / BPBreID-equivalent step: {drop['step_s'] / base['step_s']:.2f}x wall, "
          f"{drop['cpu_s'] / base['cpu_s']:.2f}x CPU time (target <= 1.25)")


if __name__ == "__main__":
    main()
