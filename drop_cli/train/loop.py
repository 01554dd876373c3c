"""The training loop: one epoch at a time, evaluating, checkpointing and logging into the run folder.

Determinism: every random choice of an epoch (the PK batches, each draw's augmentation) is derived
from (seed, epoch) alone (``SeededBatches``), never from a DataLoader worker's state, and checkpoints
are written at epoch ends: a run resumed from ``last.pt`` continues exactly as the uninterrupted run
would, and the number of workers does not change the result (bit for bit on CPU). The workers persist
from epoch to epoch.

Distributed: under ``torchrun`` each rank trains on its own share of the PK batches with DDP; rank 0
alone evaluates and writes files.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from .. import _ui
from ..errors import DropError
from ..model.output import FIRST_PART, row_names
from .checkpoint import save_checkpoint
from .features import extract_features
from .objective import Objective
from .schedule import lr_at

METRICS_FILE = "metrics.csv"
# Steps between reads of the loss values on CUDA (every read waits for the GPU to finish).
LOSS_READ_EVERY = 25


@dataclass
class LoopConfig:
    """Plain values the loop needs (resolved from the recipe by drop_cli.api.train)."""

    epochs: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    milestones: list[int]
    gamma: float
    eval_every: int
    amp: bool
    channels_last: bool
    workers: int
    flip_tta: bool
    eval_distance: str = "parts+foreground"
    eval_rerank: bool = False


@dataclass
class LoopState:
    epoch: int = -1  # last finished epoch
    best: dict = field(default_factory=dict)  # epoch, rank1, mAP, mINP of the best evaluation
    history: list[dict] = field(default_factory=list)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 on CUDA when supported, else fp16; None (full precision) on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def evaluate(model, query_loader, gallery_loader, device, config: LoopConfig) -> dict:
    """rank-1/5/10, mAP, mINP under the recipe's eval.distance (and eval.rerank), exactly as `drop evaluate`."""
    from ..evaluation.report import evaluate_setting, make_setting

    dtype = amp_dtype(device, config.amp)
    q = extract_features(model, query_loader, device, config.flip_tta, dtype)
    g = extract_features(model, gallery_loader, device, config.flip_tta, dtype)
    names = row_names([f"part {k + 1}" for k in range(q.embeddings.shape[1] - FIRST_PART)])
    row = evaluate_setting(q, g, names, make_setting(config.eval_distance, True, config.eval_rerank))
    return {k: row[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}


class LossTally:
    """The epoch's loss terms, kept on the device and read back every ``read_every`` steps.

    Reading a value (``.item()``, ``if`` on a tensor) waits for the GPU; doing it every step would
    keep the CPU from queueing the next step's kernels while the GPU runs this one. A non-finite
    loss still stops training naming the first bad step and term, a few steps later at most.
    """

    def __init__(self, epoch: int, read_every: int):
        self.epoch, self.read_every = epoch, read_every
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []
        self.sums: torch.Tensor | None = None
        self.steps = 0  # steps read back

    def add(self, terms: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        self.names = self.names or [*terms, "loss"]
        self.pending.append(torch.stack([*(v.detach().float() for v in terms.values()), loss.detach().float()]))
        if len(self.pending) >= self.read_every:
            self.read()

    def read(self) -> None:
        """Read back the pending steps (one wait for the device); raise at the first non-finite one."""
        if not self.pending:
            return
        values = torch.stack(self.pending).double().cpu()
        self.pending = []
        finite = torch.isfinite(values)
        if not finite.all():
            row = int((~finite.all(dim=1)).nonzero()[0])
            bad = [name for name, ok in zip(self.names[:-1], finite[row].tolist()) if not ok]
            raise DropError(f"the loss became {values[row, -1].item()} at epoch {self.epoch + 1}, step "
                            f"{self.steps + row + 1} (term {', '.join(bad) or 'total'}).",
                            hint="last.pt holds the last good epoch; lower optim.lr or check the data.")
        self.sums = values.sum(dim=0) if self.sums is None else self.sums + values.sum(dim=0)
        self.steps += len(values)

    def means(self) -> dict[str, float]:
        self.read()
        return {} if self.sums is None else dict(zip(self.names, (self.sums / self.steps).tolist()))


class MetricsLog:
    """metrics.csv: one row per epoch, appended and flushed; curves.png redrawn from it."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS_FILE
        self.run_dir = run_dir

    def append(self, row: dict, history: list[dict]) -> None:
        columns = list(dict.fromkeys(k for r in history for k in r))
        with open(self.path, "w", newline="") as f:  # rewritten whole: columns can appear (eval epochs)
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
        from ..viz.curves import plot_training_curves

        plot_training_curves(history, self.run_dir / "curves.png")


def train_loop(model: torch.nn.Module, objective: Objective, train_set, sampler, query_loader, gallery_loader,
               device: torch.device, config: LoopConfig, run_dir: Path | None, recipe: dict, num_classes: int,
               state: LoopState, optimizer: torch.optim.Optimizer, bank, log, progress: bool = True,
               rank: int = 0, world_size: int = 1) -> LoopState:
    """Train from ``state.epoch + 1`` to ``config.epochs``; returns the final state."""
    dtype = amp_dtype(device, config.amp)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    core = model.module if hasattr(model, "module") else model
    metrics_log = MetricsLog(run_dir) if run_dir is not None else None
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=config.workers,
                        pin_memory=device.type == "cuda", persistent_workers=config.workers > 0)
    for epoch in range(state.epoch + 1, config.epochs):
        lr = lr_at(epoch, config.lr, config.warmup_epochs, config.milestones, config.gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sampler.set_epoch(epoch)
        use_memory = objective.use_memory(bank, epoch)
        tally = LossTally(epoch, LOSS_READ_EVERY if device.type == "cuda" else 1)
        images, start = 0, time.perf_counter()
        model.train()
        with _ui.progress_bar(f"epoch {epoch + 1}/{config.epochs}", len(sampler), unit="it",
                              enabled=progress and rank == 0) as advance:
            for batch in loader:
                x = batch["image"].to(device, non_blocking=True)
                if config.channels_last and device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                labels = batch["labels"].to(device, non_blocking=True)
                pids = batch["pid"].to(device)
                indices = batch["index"].to(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    out = model(x)
                terms = objective(out, labels, pids, indices, bank, use_memory)
                loss = sum(terms.values())
                tally.add(terms, loss)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if bank is not None:
                    bank.update(indices, out.parts.detach().float(), out.visibility, pids)
                images += len(x)
                advance(1)
        means = tally.means()
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "lr": lr, **means,
               "images_per_s": images * world_size / max(seconds, 1e-9), "memory": int(use_memory)}
        is_eval = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        if is_eval and rank == 0:
            row.update(evaluate(core, query_loader, gallery_loader, device, config))
        state.epoch = epoch
        state.history.append(row)
        if rank == 0:
            improved = is_eval and (not state.best or row["mAP"] > state.best["mAP"])
            if improved:
                state.best = {k: row[k] for k in ("epoch", "rank1", "mAP", "mINP")}
            log(_epoch_line(row))
            if run_dir is not None:
                content = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                           "memory_bank": bank.state_dict() if bank is not None else None, "epoch": epoch,
                           "recipe": recipe, "num_classes": num_classes, "metrics": row, "best": state.best,
                           "history": state.history}
                save_checkpoint(run_dir / "last.pt", **content)
                if improved:
                    save_checkpoint(run_dir / "best.pt", **{**content, "optimizer": None, "memory_bank": None})
                metrics_log.append(row, state.history)
        if world_size > 1:
            dist.barrier()
    return state


def _epoch_line(row: dict) -> str:
    terms = " ".join(f"{k}={v:.3f}" for k, v in row.items()
                     if k not in {"epoch", "lr", "images_per_s", "memory", "rank1", "rank5", "rank10", "mAP", "mINP"})
    line = f"epoch {row['epoch']}: lr={row['lr']:.2e} {terms} ({row['images_per_s']:.1f} img/s)"
    if "mAP" in row:
        line += f" | rank-1 {100 * row['rank1']:.1f} mAP {100 * row['mAP']:.1f} mINP {100 * row['mINP']:.1f}"
    return line
