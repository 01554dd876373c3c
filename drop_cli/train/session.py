"""Set up a training run from a resolved recipe: device, processes, data, model, run folder, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import _ui
from .._distributed import local_rank as _local_rank
from .._distributed import process_group
from .._files import output_lock, prepare_folder, write_text
from ..data import load_dataset
from ..data.images import ReidImages
from ..data.samplers import PKBatchSampler, SeededBatches
from ..data.transforms import EvalTransform, TrainTransform
from ..errors import DropError, Interrupted, LabelsError
from ..evaluation.scoring import Rerank
from ..labels import LabelFile, default_labels_path
from ..labels.labelers.bpbreid import MASKS_FOLDER, missing_masks_error
from ..model import build_model, input_normalisation
from ..parts import part_names
from ..recipe import Recipe, recipe_differences, recipe_from_dict
from .checkpoint import load_checkpoint, load_weights
from .loop import LoopConfig, LoopState, amp_dtype, train_loop
from .objective import Objective
from .run_dir import environment, new_run_dir, write_json
from .step import GlobalBatch, StepContext


@dataclass
class TrainResult:
    """A finished run: its folder and the final epoch's evaluation, the reported result [base]."""

    run_dir: Path | None
    final: dict
    seconds: float
    rank: int = 0  # under torchrun, only rank 0 reports

    @property
    def checkpoint(self) -> Path | None:
        """``last.pt``: the model of the final epoch (no model is selected on the test split)."""
        return self.run_dir / "last.pt" if self.run_dir and (self.run_dir / "last.pt").exists() else None

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "final": self.final,
            "seconds": round(self.seconds, 3),
        }


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` as a device; on CUDA the process's GPU (``local_rank``, by default
    torchrun's LOCAL_RANK, 0 without it)."""
    if name not in {"auto", "cpu", "cuda"}:
        raise DropError(f"unknown device {name!r}.", hint="Use auto, cpu or cuda.")
    if name == "cuda" and not torch.cuda.is_available():
        raise DropError(
            "--device cuda was asked for, but PyTorch sees no CUDA device.",
            hint="Use --device cpu, or install a CUDA build of PyTorch on a machine with a GPU.",
        )
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", _local_rank() if local_rank is None else local_rank)


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The model on ``device``, in channels_last memory format on CUDA when asked: training and
    feature extraction run it the same way, so they use the same kernels and give the same numbers."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last and device.type == "cuda" else model


def labels_path(recipe: Recipe, folder: Path) -> Path:
    """The recipe's labels file: ``data.labels``, else prepare-data's default path (BPBreID's masks at the
    input size, the other labelers at their default size)."""
    data = recipe.data
    if data.labels:
        return Path(data.labels).expanduser()
    size = (data.height, data.width) if data.labeler == "bpbreid" else (None, None)
    return default_labels_path(folder, data.labeler, data.preset, *size)


def _open_labels(recipe: Recipe, folder: Path) -> LabelFile:
    data = recipe.data
    path = labels_path(recipe, folder)
    if not path.is_file():
        if (
            data.labeler == "bpbreid"
            and not data.labels
            and not (folder / MASKS_FOLDER).is_dir()
            and not any((folder / "masks").glob("*"))
        ):
            raise missing_masks_error(data.dataset, folder / MASKS_FOLDER)
        size = f" --height {data.height} --width {data.width}" if data.labeler == "bpbreid" else ""
        raise LabelsError(
            f"labels file {path} not found.",
            hint=f"Create it with `drop prepare-data {data.dataset} --root {data.root} "
            f"--labeler {data.labeler} --preset {data.preset}{size}`, or set data.labels.",
        )
    labels = LabelFile(path)
    if labels.attrs.get("labeler") == "bpbreid" and (labels.height, labels.width) != (data.height, data.width):
        _ui.warn(
            f"{path} holds {labels.height}x{labels.width} labels for {data.height}x{data.width} inputs: the "
            "parsing targets differ from BPBreID's at part boundaries. Prepare them with --height "
            f"{data.height} --width {data.width} for BPBreID's exact targets."
        )
    if labels.attrs.get("preset") != recipe.data.preset:
        raise LabelsError(
            f"{path} holds `{labels.attrs.get('preset')}` labels ({len(labels.parts)} parts) but the "
            f"recipe asks for data.preset {recipe.data.preset} "
            f"({len(part_names(recipe.data.preset))} parts).",
            hint="Set data.preset to match, or prepare labels with the recipe's preset.",
        )
    return labels


def _run_folder(recipe: Recipe, output: str | Path | None, resume: str | Path | None) -> Path:
    if resume is not None:
        return Path(resume).expanduser()
    if output is not None:
        run_dir = Path(output).expanduser()
        if (run_dir / "last.pt").exists():
            raise DropError(
                f"{run_dir} already holds a run.",
                hint=f"Continue it with --resume {run_dir}, or choose another --output.",
            )
        prepare_folder(run_dir)
        return run_dir
    name = recipe.train.name or f"{recipe.data.dataset}-{recipe.model.backbone}"
    return new_run_dir(recipe.train.output, name)


def _with_absolute_paths(recipe: Recipe) -> Recipe:
    """The recipe with its data and weights paths absolute, so that the run folder's recipe.yaml and
    its checkpoints find them from any folder (a resume, extract-features elsewhere)."""

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).expanduser().absolute())

    data = dataclasses.replace(
        recipe.data,
        root=str(absolute(recipe.data.root)),
        test_root=absolute(recipe.data.test_root),
        labels=absolute(recipe.data.labels),
    )
    return dataclasses.replace(
        recipe, data=data, model=dataclasses.replace(recipe.model, weights=absolute(recipe.model.weights))
    )


def _check_resume(recipe: Recipe, checkpoint: dict, path: Path) -> None:
    stored = _with_absolute_paths(recipe_from_dict(checkpoint["recipe"]))  # runs of drop <= 0.2 stored them as given
    differences = recipe_differences(stored.to_dict(), recipe.to_dict())
    if differences:
        raise DropError(
            f"cannot resume {path}: the recipe differs in {', '.join(differences)}.",
            hint="Resume with the run's own recipe (omit --recipe), or start a new run.",
        )


def _write_environment(path: Path, env: dict, resumed: bool) -> None:
    """env.json: the first start's environment; each resume is appended under ``resumes``."""
    if resumed and path.is_file():
        try:
            first = json.loads(path.read_text())
        except (OSError, ValueError):
            first = None
        if isinstance(first, dict):
            env = {**first, "resumes": [*first.get("resumes", []), env]}
    write_json(path, env)


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict | None, source: Path) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as e:
        raise DropError(
            f"{source} holds no optimizer state that fits this run ({type(e).__name__}: {e}).",
            hint="Resume from the run's own last.pt, or start a new run.",
        ) from None


def run_training(
    recipe: Recipe,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train ``recipe``; see :func:`drop_cli.api.train`."""
    start = time.perf_counter()
    recipe = _with_absolute_paths(recipe)
    rank, world_size, local_rank = process_group()
    dev = resolve_device(device, local_rank)
    torch.manual_seed(recipe.train.seed)
    data, train_cfg = recipe.data, recipe.train

    ds = load_dataset(data.dataset, data.root)
    test_ds = (
        ds
        if data.test_dataset in (None, data.dataset)
        else load_dataset(data.test_dataset, data.test_root or data.root)
    )
    labels = _open_labels(recipe, ds.folder)
    parts = labels.parts
    flagged = {r.path for r in ds.train if r.path in labels and labels.flags(r.path)} if data.skip_flagged else set()
    train_records = [r for r in ds.train if r.path not in flagged]
    num_classes = len({r.pid for r in ds.train})  # every identity keeps its class, flagged images or not
    model = build_model(
        num_classes,
        len(parts),
        ppe_height=data.height // 4,  # one position row per feature row
        **dataclasses.asdict(recipe.model),
    )
    normalise = input_normalisation(model, pretrained=recipe.model.pretrained, weights=recipe.model.weights)
    train_set = ReidImages(
        train_records,
        ds.folder,
        TrainTransform(
            data.height,
            data.width,
            parts=parts,
            pad=data.pad,
            flip=data.flip,
            flip_swap_sides=data.flip_swap_sides,
            random_erasing=data.random_erasing,
            erasing=data.erasing,
            color_jitter=data.color_jitter,
            jitter_brightness=data.jitter_brightness,
            jitter_contrast=data.jitter_contrast,
            jitter_saturation=data.jitter_saturation,
            antialias=data.antialias,
            **normalise,
        ),
        labels,
    )
    sampler = SeededBatches(
        PKBatchSampler(
            [r.pid for r in train_records], train_cfg.batch_size, data.num_instances, train_cfg.seed, rank, world_size
        )
    )
    eval_transform = EvalTransform(data.height, data.width, antialias=data.antialias, **normalise)
    query_loader, gallery_loader = (
        DataLoader(
            ReidImages(records, test_ds.folder, eval_transform),
            batch_size=recipe.eval.batch_size,
            num_workers=data.workers,
        )
        for records in (test_ds.query, test_ds.gallery)
    )

    if train_cfg.sync_bn and world_size > 1:
        if dev.type != "cuda":
            raise DropError(
                "train.sync_bn needs CUDA (PyTorch synchronises batch norm on GPUs only).",
                hint="Set train.sync_bn: false on CPUs.",
            )
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = place_model(model, dev, train_cfg.channels_last)
    objective = Objective(recipe.loss)
    bank = objective.memory_bank(len(train_records), len(parts), recipe.model.embed_dim)
    if bank is not None:
        bank.to(dev)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay, fused=dev.type == "cuda"
    )  # one kernel for all parameters, not ~10 per tensor

    run_dir = _run_folder(recipe, output, resume) if rank == 0 else None
    # a second run on this folder (a resume started twice) refuses while this one holds it
    lock = output_lock(run_dir / ".lock", run_dir) if run_dir is not None else contextlib.nullcontext()
    with lock:
        state = LoopState()
        if resume is not None:
            last = Path(resume).expanduser() / "last.pt"
            checkpoint = load_checkpoint(last)
            _check_resume(recipe, checkpoint, Path(resume))
            load_weights(model, checkpoint["model"], last)
            _load_optimizer(optimizer, checkpoint.get("optimizer"), last)
            if bank is not None:
                load_weights(bank, checkpoint.get("memory_bank") or {}, last)
            state = LoopState(checkpoint["epoch"], checkpoint["history"])
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        if world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(  # the global baseline leaves the part branch unused
                model,
                device_ids=[local_rank] if dev.type == "cuda" else None,
                find_unused_parameters=not recipe.loss.parts,
            )

        log_file = run_dir / "log.txt" if run_dir is not None else None

        def log(line: str) -> None:
            _ui.info(line)
            if log_file is not None:
                with open(log_file, "a") as f:
                    f.write(line + "\n")

        if rank == 0:
            write_text(run_dir / "recipe.yaml", recipe.to_yaml())
            _write_environment(
                run_dir / "env.json", environment(str(dev), train_cfg.seed, world_size), resume is not None
            )
            if flagged:
                write_text(run_dir / "flagged.txt", "".join(f"{path}\n" for path in sorted(flagged)))
                _ui.warn(
                    f"{len(flagged)} training image(s) that prepare-data flagged are left out ({run_dir / 'flagged.txt'}"
                    "); data.skip_flagged: false keeps them."
                )
            log(
                f"run folder {run_dir}: {data.dataset} ({len(train_records):,} train images, {num_classes} ids), "
                f"{recipe.model.backbone} on {dev}"
                + (f" x {world_size} processes" if world_size > 1 else "")
                + (f", resuming after epoch {state.epoch + 1}" if resume is not None else "")
            )
        config = LoopConfig(
            epochs=train_cfg.epochs,
            lr=recipe.optim.lr,
            warmup_epochs=recipe.optim.warmup_epochs,
            milestones=recipe.optim.milestones,
            gamma=recipe.optim.gamma,
            eval_every=train_cfg.eval_every,
            workers=data.workers,
            parts=parts,
            flip_tta=recipe.eval.flip_tta,
            eval_distance=recipe.eval.distance,
            eval_rerank=recipe.eval.rerank,
            rerank=Rerank(recipe.eval.rerank_k1, recipe.eval.rerank_k2, recipe.eval.rerank_lambda),
            part_embeddings=recipe.eval.part_embeddings,
            compile=train_cfg.compile,
        )
        dtype = amp_dtype(dev, train_cfg.amp)
        context = StepContext(
            objective=objective,
            device=dev,
            autocast_dtype=dtype,
            channels_last=train_cfg.channels_last,
            gather=GlobalBatch(rank, world_size),
            bank=bank,
            scaler=torch.amp.GradScaler() if dtype == torch.float16 else None,
        )
        try:
            state = train_loop(
                model,
                context=context,
                config=config,
                train_set=train_set,
                sampler=sampler,
                query_loader=query_loader,
                gallery_loader=gallery_loader,
                optimizer=optimizer,
                state=state,
                run_dir=run_dir,
                checkpoint_info={"recipe": recipe.to_dict(), "num_classes": num_classes},
                log=log,
                progress=progress,
                rank=rank,
                world_size=world_size,
            )
        except KeyboardInterrupt:
            if run_dir is None or not (run_dir / "last.pt").is_file():
                raise Interrupted(
                    "interrupted before the first epoch ended: nothing to resume.", hint="Run the command again."
                ) from None
            raise Interrupted(
                f"interrupted; {run_dir / 'last.pt'} holds the last finished epoch.",
                hint=f"Continue with: drop train --resume {run_dir}",
            ) from None
        except torch.cuda.OutOfMemoryError:
            raise DropError(
                f"out of GPU memory at batch size {train_cfg.batch_size}.",
                hint="Lower train.batch_size (e.g. --set train.batch_size=32), or use 256x128 inputs.",
            ) from None
        final = (
            {k: v for k, v in state.history[-1].items() if k in ("epoch", "rank1", "mAP", "mINP")}
            if state.history
            else {}
        )
        return TrainResult(run_dir, final, time.perf_counter() - start, rank)
