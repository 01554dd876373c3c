"""The `drop` command line: one short function per verb, each calling one function of drop_cli.api.

A DropError becomes one red line with its hint and exit code 1, a usage error (an unknown option, a
value of the wrong type or out of range) one line and exit code 2; with ``--json`` either also
prints a JSON object with ``error`` and ``hint`` on stdout. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from . import _ui, api, projects
from ._distributed import is_main_process
from ._version import __version__
from .data.datasets import DATASET_NAMES, SYNTHETIC_MIN_IDS
from .errors import DropError, lookup
from .recipe import EvalConfig, key_range, recipe_keys

# click's exceptions, from the click typer runs on (its own copy in typer >= 0.22): where typer.BadParameter lives
click_exceptions = importlib.import_module(typer.BadParameter.__module__)
app = typer.Typer(
    name="drop",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Occluded person re-identification with DROP: labels, training, features, evaluation.",
)
stdout = Console(highlight=False)


def _bounds(key: str) -> dict:
    """typer.Option's min/max for an option that sets what the recipe key ``key`` sets: its schema range."""
    valid = key_range(key)
    if valid is None or valid.low_open or valid.high_open:
        raise ValueError(f"{key} has no closed range for an option")
    return {"min": valid.low, "max": valid.high}


def _path(help: str, *decls: str, kind: str, output: bool = False, argument: bool = False):
    """A path option (or argument) that says what it names, a ``file``, a ``folder`` or ``any`` (either):
    the parser refuses a folder given for a file and a file given for a folder, and an existing output
    it cannot write; the tests read the same marks to try every path option with every wrong kind of
    path."""
    make = typer.Argument if argument else typer.Option
    return make(
        *decls,
        help=help,
        metavar={"file": "FILE", "folder": "FOLDER", "any": "PATH"}[kind]
        + ("..." if argument and kind == "any" else ""),
        file_okay=kind != "folder",
        dir_okay=kind != "file",
        writable=output,
    )


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (logs go to stderr).")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
DistanceOpt = Annotated[str, typer.Option(help="global | foreground | parts | parts+foreground.")]
EVAL = EvalConfig()  # the defaults of the evaluation options are the recipe's eval section
VisibilityOpt = Annotated[bool, typer.Option("--visibility/--no-visibility", help="Weight parts by their visibility.")]
RerankOpt = Annotated[bool, typer.Option("--rerank", help="k-reciprocal re-ranking.")]
K1Opt = Annotated[int, typer.Option(help="Re-ranking k1.", **_bounds("eval.rerank_k1"))]
K2Opt = Annotated[int, typer.Option(help="Re-ranking k2.", **_bounds("eval.rerank_k2"))]
LambdaOpt = Annotated[
    float, typer.Option("--lambda", help="Re-ranking weight of the original distance.", **_bounds("eval.rerank_lambda"))
]
MovedRootOpt = Annotated[
    Path | None,
    _path("Where the images are now, if the dataset moved since the features were made.", "--root", kind="folder"),
]
ModelOpt = Annotated[
    Path, _path("A run folder's last.pt, or its .onnx export (drop export).", "--checkpoint", kind="file")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(help="Worker processes (default: CPU count, at most 8; 0 = none).", **_bounds("data.workers")),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the random selection.", min=0)]
IdsOpt = Annotated[int, typer.Option(help="Identities of the synthetic set.", min=SYNTHETIC_MIN_IDS)]
RootOpt = Annotated[Path, _path("Folder that contains the dataset folder.", kind="folder")]
PatternOpt = Annotated[
    str | None,
    typer.Option(
        help="For the `folder` dataset: regex with named groups pid and camid, e.g. '(?P<pid>\\d+)_c(?P<camid>\\d)'."
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"drop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Occluded person re-identification with DROP: labels, training, features, evaluation."""


def _command(func):
    """Run a verb: DropError -> one line on stderr (and JSON on stdout with --json), exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DropError as e:
            _error(e.message, e.hint, json_out=bool(kwargs.get("json_out")))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            _ui.console.print("[bold red]interrupted.[/] Run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper


def _error(message: str, hint: str | None, *, json_out: bool) -> None:
    _ui.error(message, hint)
    if json_out:
        print(json.dumps({"error": message, "hint": hint}))


def _emit(payload: dict, tables: list[Table], json_out: bool) -> None:
    """Tables on stdout; with --json they go to stderr and the payload alone to stdout. A table is at
    least as wide as its title (a path, often), so the title stays on one line. Under torchrun, rank 0
    alone prints."""
    if not is_main_process():
        return
    for table in tables:
        if isinstance(table.title, str):
            table.min_width = max(table.min_width or 0, len(table.title))
        (_ui.console if json_out else stdout).print(table)
    if json_out:
        print(json.dumps(payload))


def _stats_table(info: api.DatasetInfo, title: str) -> Table:
    table = Table(title=title)
    for col in ("split", "images", "ids", "cameras"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, s in info.splits.items():
        table.add_row(split, f"{s.images:,}", f"{s.ids:,}", str(s.cameras))
    return table


@app.command("dataset-info")
@_command
def dataset_info(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASET_NAMES)}.")],
    root: RootOpt = Path("."),
    pattern: PatternOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Parse a dataset and check its statistics against the published ones.

    Example: drop dataset-info occluded_duke --root ~/data
    """
    info = api.dataset_info(dataset, root=root, pattern=pattern)
    for warning in info.warnings:
        _ui.warn(warning)
    _emit(info.to_json(), [_stats_table(info, f"{dataset} ({info.folder})")], json_out)


@app.command("make-synthetic")
@_command
def make_synthetic(
    root: Annotated[Path, _path("Folder to create synthetic/ in.", kind="folder", output=True, argument=True)],
    ids: Annotated[
        int, typer.Option(help="Identities in all (about half train, half test).", min=SYNTHETIC_MIN_IDS)
    ] = 100,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.", min=0)] = 0,
    workers: WorkersOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing synthetic/ made with other settings.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate the synthetic occluded-pedestrian set (Occluded-Duke layout) with ground-truth part maps.

    Example: drop make-synthetic ./data --ids 100 --seed 0
    """
    result = api.make_synthetic(root, ids=ids, seed=seed, workers=workers, overwrite=overwrite, progress=not json_out)
    verb = "already there" if result.already_complete else f"written in {result.seconds:.1f} s"
    _ui.info(
        f"synthetic set {verb}: {result.folder} ({sum(result.images.values()):,} images, "
        f"ground truth {result.ground_truth.name})"
    )
    _emit(result.to_json(), [], json_out)


@app.command("prepare-data")
@_command
def prepare_data(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASET_NAMES)}.")],
    root: RootOpt = Path("."),
    labeler: Annotated[str, typer.Option(help="pose | bpbreid | stripes | synthetic.")] = "pose",
    preset: Annotated[str, typer.Option(help="eight | five | five_v body parts (five_v: bpbreid only).")] = "eight",
    out: Annotated[
        Path | None, _path("Labels file (default: inside the dataset folder).", kind="file", output=True)
    ] = None,
    workers: WorkersOpt = None,
    height: Annotated[
        int | None,
        typer.Option(
            help="Label map height (default 256 for bpbreid, the input height; else 128).", **_bounds("data.height")
        ),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="Label map width (default 128 for bpbreid; else 64).", **_bounds("data.width"))
    ] = None,
    pose_model: Annotated[
        Path | None, _path("BlazePose pose_landmark_full.tflite, for offline use.", kind="file")
    ] = None,
    bpbreid_masks: Annotated[Path | None, _path("Folder of BPBreID's masks for this dataset.", kind="folder")] = None,
    pattern: PatternOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing labels file made with other settings.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write pseudo human-parsing labels for every image of a dataset into one HDF5 file.

    Interrupted runs resume where they stopped. Example: drop prepare-data occluded_duke --root ~/data
    """
    result = api.prepare_data(
        dataset,
        root=root,
        labeler=labeler,
        preset=preset,
        out=out,
        workers=workers,
        height=height,
        width=width,
        pose_model=pose_model,
        bpbreid_masks=bpbreid_masks,
        pattern=pattern,
        overwrite=overwrite,
        progress=not json_out,
    )
    splits = [k for k, v in result.info.splits.items() if v.images]
    table = Table(title=f"{dataset}: {result.labeler} labels ({result.preset}) in {result.labels.path}")
    for col in ("split", "images", "ids", "cameras", "flagged"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split in splits:
        s = result.info.splits[split]
        table.add_row(split, f"{s.images:,}", f"{s.ids:,}", str(s.cameras), f"{result.labels.flagged[split]:,}")
    shares = Table(title="share of pixels per part")
    shares.add_column("part")
    for split in splits:
        shares.add_column(split, justify="right")
    for k, part in enumerate(("background", *result.parts)):
        shares.add_row(part, *(f"{100 * result.labels.part_share[split][k]:.1f}%" for split in splits))
    if result.labels.already_complete:
        _ui.info(f"{result.labels.path} is already complete; nothing to do (--overwrite to redo it).")
    else:
        _ui.info(
            f"done in {result.seconds:.1f} s"
            + (f" (resumed {result.labels.resumed_blocks} finished blocks)" if result.labels.resumed_blocks else "")
        )
    _emit(result.to_json(), [table, shares], json_out)


SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a recipe key: --set optim.lr=1e-4 (repeatable).")
]
RecipeOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="YAML recipe or a shipped recipe's name (see recipes/); repeat to stack base-free files: "
        "--recipe occluded_duke --recipe ablations/no_dpu."
    ),
]


@app.command("train")
@_command
def train(
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    output: Annotated[
        Path | None, _path("Run folder (default: runs/<name>, numbered).", kind="folder", output=True)
    ] = None,
    resume: Annotated[Path | None, _path("Continue the run in this folder from its last.pt.", kind="folder")] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Train DROP from a recipe, evaluating and checkpointing into a run folder; the final epoch is the result.

    Example: drop train --recipe synthetic --set train.epochs=5
    """
    if not recipe and resume is None:
        raise DropError("no recipe given.", hint="Pass --recipe FILE (see recipes/), or --resume RUN_DIR.")
    result = api.train(recipe, overrides=set_ or [], output=output, resume=resume, device=device, progress=not json_out)
    if result.rank != 0:
        return
    table = Table(title=f"{result.run_dir}")
    for col in ("", "epoch", "rank-1", "mAP", "mINP"):
        table.add_column(col, justify="right")
    if result.final:
        row = result.final
        table.add_row("final", str(row["epoch"]), *(f"{100 * row[k]:.1f}" for k in ("rank1", "mAP", "mINP")))
    _emit(result.to_json(), [table], json_out)


recipe_app = typer.Typer(no_args_is_help=True, help="Inspect recipes.")
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("show")
@_command
def recipe_show(recipe: RecipeOpt = None, set_: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Print the resolved recipe (defaults < base < file < --set) as YAML.

    Example: drop recipe show --recipe occluded_duke --recipe ablations/no_dpu
    """
    resolved = api.resolve_recipe(recipe, overrides=set_ or [])
    if json_out:
        print(json.dumps(resolved.to_dict()))
    else:
        print(resolved.to_yaml(), end="")


@recipe_app.command("keys")
@_command
def recipe_keys_table(json_out: JsonOpt = False) -> None:
    """Every recipe key with its valid values and its default (the comments in drop_cli/recipe.py say
    where each default comes from).

    Example: drop recipe keys
    """
    keys = recipe_keys()
    table = Table(title="recipe keys", box=box.SIMPLE)
    for col in ("key", "valid values", "default"):
        table.add_column(col)
    for k in keys:
        table.add_row(k.key, k.valid, repr(k.default))
    _emit({"keys": [{"key": k.key, "valid": k.valid, "default": k.default} for k in keys]}, [table], json_out)


@app.command("extract-features")
@_command
def extract_features(
    checkpoint: Annotated[Path, _path("A run folder's last.pt.", kind="file")],
    dataset: Annotated[str | None, typer.Option(help="Dataset key (default: the recipe's test dataset).")] = None,
    root: Annotated[
        Path | None, _path("Folder that contains the dataset folder (default: the recipe's).", kind="folder")
    ] = None,
    splits: Annotated[str, typer.Option(help="Comma-separated: train, query, gallery.")] = "query,gallery",
    out: Annotated[
        Path | None, _path("Features file (default: features.h5 next to the checkpoint).", kind="file", output=True)
    ] = None,
    flip_tta: Annotated[
        bool | None,
        typer.Option(
            "--flip-tta/--no-flip-tta", help="Also embed the mirrored image (default: the recipe's eval.flip_tta)."
        ),
    ] = None,
    parsing: Annotated[
        bool, typer.Option("--parsing/--no-parsing", help="Store the predicted parsing maps (for drop visualize).")
    ] = True,
    half: Annotated[bool, typer.Option("--half", help="Store the embeddings as float16.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Images per batch (default: the recipe's eval.batch_size).", **_bounds("eval.batch_size")),
    ] = None,
    device: DeviceOpt = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing features file made with other settings.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Embed a dataset's query and gallery with a trained model into one HDF5 features file.

    Interrupted runs resume where they stopped. Example: drop extract-features --checkpoint runs/synthetic-drop/last.pt
    """
    result = api.extract_features(
        checkpoint,
        dataset=dataset,
        root=root,
        splits=splits,
        out=out,
        flip_tta=flip_tta,
        batch_size=batch_size,
        device=device,
        parsing=parsing,
        half=half,
        overwrite=overwrite,
        progress=not json_out,
    )
    if result.already_complete:
        _ui.info(f"{result.features} is already complete; nothing to do (--overwrite to redo it).")
    else:
        _ui.info(
            f"done in {result.seconds:.1f} s ({result.images_per_s or 0:.1f} images/s)"
            + (f", resumed {result.resumed_chunks} finished chunks" if result.resumed_chunks else "")
        )
    table = Table(title=f"{result.dataset} features in {result.features}")
    for col in ("split", "images", "rows"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, images in result.splits.items():
        table.add_row(split, f"{images:,}", ", ".join(result.names))
    _emit(result.to_json(), [table], json_out)


@app.command("evaluate")
@_command
def evaluate(
    features: Annotated[Path, _path("A features file from drop extract-features.", kind="file")],
    distance: DistanceOpt = EVAL.distance,
    visibility: VisibilityOpt = True,
    rerank: RerankOpt = False,
    k1: K1Opt = EVAL.rerank_k1,
    k2: K2Opt = EVAL.rerank_k2,
    lambda_value: LambdaOpt = EVAL.rerank_lambda,
    ablate: Annotated[
        bool,
        typer.Option(
            "--ablate",
            help="Every distance x visibility x re-ranking, and each part "
            "left out, in one table (instead of --distance, "
            "--no-visibility and --rerank).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        _path(
            "Folder for eval.json/eval.csv or ablate.json/ablate.csv (default: the features file's).",
            kind="folder",
            output=True,
        ),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Check that the features come from this dataset.")] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Score cached features: rank-1/5/10, mAP and mINP under the Market-1501 protocol.

    Example: drop evaluate --features runs/synthetic-drop/features.h5 --ablate
    """
    result = api.evaluate(
        features,
        distance=distance,
        visibility=visibility,
        rerank=rerank,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        ablate=ablate,
        out=out,
        dataset=dataset,
        device=device,
        progress=not json_out,
    )

    table = Table(
        title=f"{result.dataset}: {result.queries:,} query x {result.gallery:,} gallery ({result.features})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    left_out = any(row["left_out"] for row in result.results)
    for col in ("distance", "vis", "rerank", *(("left out",) if left_out else ()), "R-1", "R-5", "R-10", "mAP", "mINP"):
        table.add_column(col, justify="left" if col in ("distance", "left out") else "right", no_wrap=True)
    for row in result.results:
        table.add_row(
            row["distance"],
            "on" if row["visibility"] else "off",
            "on" if row["rerank"] else "off",
            *((row["left_out"] or "",) if left_out else ()),
            *(f"{100 * row[k]:.1f}" for k in ("rank1", "rank5", "rank10", "mAP", "mINP")),
        )
    _ui.info(f"wrote {result.json_path} and {result.csv_path.name} in {result.seconds:.1f} s")
    _emit(result.to_json(), [table], json_out)


@app.command("embed")
@_command
def embed(
    paths: Annotated[
        list[Path], _path("Image files, folders (walked) or .txt lists of paths.", kind="any", argument=True)
    ],
    checkpoint: ModelOpt,
    out: Annotated[Path, _path("Features file to write, or to add new images to.", kind="file", output=True)] = Path(
        "embeddings.h5"
    ),
    split: Annotated[str, typer.Option(help="The split of the features file the images go to.")] = "gallery",
    pattern: PatternOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.", **_bounds("eval.batch_size"))] = 64,
    workers: WorkersOpt = None,
    parsing: Annotated[bool, typer.Option("--parsing", help="Store the predicted parsing maps.")] = False,
    half: Annotated[bool, typer.Option("--half", help="Store the embeddings as float16.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the file instead of adding to it.")] = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Embed your own crops (no identities needed) into a features file for drop search and drop evaluate.

    A second run on a grown folder embeds only the new images; an interrupted run resumes. Unreadable
    images are listed and left out. Example: drop embed crops/ --checkpoint runs/x/last.pt --out crops.h5
    """
    result = api.embed(
        paths,
        model=checkpoint,
        out=out,
        split=split,
        pattern=pattern,
        batch_size=batch_size,
        workers=workers,
        parsing=parsing,
        half=half,
        overwrite=overwrite,
        device=device,
        progress=not json_out,
    )
    if result.already_complete:
        _ui.info(f"{result.features} already holds every image; nothing to do.")
    table = Table(title=f"{result.split} of {result.features}")
    for col in ("images", "embedded now", "left out (unreadable)", "runtime", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.images:,}",
        f"{result.embedded:,}",
        f"{len(result.skipped):,}",
        result.runtime,
        f"{result.seconds:.1f}",
    )
    _emit(result.to_json(), [table], json_out)


@app.command("index")
@_command
def index(
    features: Annotated[Path, _path("A features file (drop embed / extract-features).", kind="file", argument=True)],
    out: Annotated[
        Path | None,
        _path("Index file (default: FEATURES with suffix .index, where drop search looks).", kind="file", output=True),
    ] = None,
    split: Annotated[str, typer.Option(help="The split to index.")] = "gallery",
    distance: Annotated[
        str | None, typer.Option(help="The search distance served (default parts+foreground, or the index's own).")
    ] = None,
    visibility: Annotated[
        bool | None, typer.Option("--visibility/--no-visibility", help="Weight parts by their visibility.")
    ] = None,
    factory: Annotated[
        str | None, typer.Option(help="A faiss index_factory string (default: a flat 4-bit product quantizer).")
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build anew instead of adding the new images.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a faiss index of a features file for fast drop search over millions of crops.

    Run it again after drop embed has added images: only the new ones are added. Needs the index extra
    (pip install 'drop-reid[index]'). Example: drop index crops.h5
    """
    result = api.index(
        features,
        out=out,
        split=split,
        distance=distance,
        visibility=visibility,
        factory=factory,
        rebuild=rebuild,
        progress=not json_out,
    )
    if not result.added:
        _ui.info(f"{result.index} already holds every image; nothing to do.")
    table = Table(title=f"index of {result.split} of {result.features}")
    for col in ("images", "added now", "trained", "index", "vector", "size", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.images:,}",
        f"{result.added:,}",
        "yes" if result.trained else "no",
        result.factory,
        f"{result.dim:,}-d",
        f"{result.index_bytes / 2**20:.1f} MB",
        f"{result.seconds:.1f}",
    )
    _emit(result.to_json(), [table], json_out)


@app.command("search")
@_command
def search(
    query: Annotated[
        list[Path], _path("Query images, folders or .txt lists (repeat the option).", "--query", kind="any")
    ],
    gallery: Annotated[
        Path, _path("A features file (drop embed / extract-features), or a folder of images.", kind="any")
    ],
    checkpoint: ModelOpt,
    top: Annotated[int, typer.Option(help="Gallery images per query.", min=1)] = 20,
    distance: DistanceOpt = EVAL.distance,
    visibility: VisibilityOpt = True,
    rerank: RerankOpt = False,
    k1: K1Opt = EVAL.rerank_k1,
    k2: K2Opt = EVAL.rerank_k2,
    lambda_value: LambdaOpt = EVAL.rerank_lambda,
    split: Annotated[str, typer.Option(help="The split of the features file that is the gallery.")] = "gallery",
    index: Annotated[
        Path | None, _path("The gallery's index (default: GALLERY.index when it exists; drop index).", kind="file")
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Score every gallery image, even where an index exists.")
    ] = False,
    candidates: Annotated[
        int | None,
        typer.Option(help="Candidates per query taken from the index and scored exactly [default: 1,000].", min=1),
    ] = None,
    out: Annotated[
        Path, _path("Folder for search.json, search.csv and search.png.", kind="folder", output=True)
    ] = Path("search"),
    draw: Annotated[int, typer.Option(help="Queries drawn in search.png (0: no picture).", min=0)] = 10,
    root: MovedRootOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Rank a gallery for query images by DROP's visibility-aware distance, as drop evaluate ranks.

    Example: drop search --checkpoint runs/x/last.pt --query person.jpg --gallery crops/
    """
    result = api.search(
        query,
        model=checkpoint,
        gallery=gallery,
        top=top,
        distance=distance,
        visibility=visibility,
        rerank=rerank,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        split=split,
        index=index,
        exact=exact,
        candidates=candidates,
        out=out,
        draw=draw,
        root=root,
        device=device,
        progress=not json_out,
    )
    if result.index is not None:
        _ui.info(f"searched through {result.index} ({result.candidates:,} candidates per query, scored exactly)")
    tables = []
    for name, rows in list(zip(result.queries, result.results))[:5]:
        table = Table(
            title=f"{name}", caption=f"gallery images in {result.folder}", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for col in ("rank", "distance", "gallery image", "parts in both"):
            table.add_column(col, justify="left" if col.startswith("gallery") else "right")
        for row in rows[:10]:
            image = Path(row["gallery"]).relative_to(result.folder)
            both = f"{len(row['visible_in_both'])}/{len(result.parts)}"
            table.add_row(str(row["rank"]), f"{row['distance']:.4f}", str(image), both)
        tables.append(table)
    more = len(result.queries) - len(tables)
    _ui.info(f"wrote {', '.join(str(f) for f in result.files)}" + (f" ({more} more queries there)" if more > 0 else ""))
    _emit(result.to_json(), tables, json_out)


@app.command("export")
@_command
def export(
    checkpoint: Annotated[Path, _path("A run folder's last.pt.", "--checkpoint", kind="file")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (the only format so far).")] = "onnx",
    out: Annotated[
        Path | None, _path("The file to write (default: model.onnx next to the checkpoint).", kind="file", output=True)
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.", min=14)] = 17,
    half: Annotated[bool, typer.Option("--half", help="float16 inside the graph (float32 input and outputs).")] = False,
    parsing: Annotated[bool, typer.Option("--parsing", help="Also output the predicted parsing map.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export a trained model to ONNX, checked against PyTorch before it is kept.

    onnxruntime runs the file on rendered crops: the outputs must match PyTorch's (1e-4 in float32,
    5e-2 with --half) and rank a small gallery the same way, else nothing is written.
    Example: drop export --checkpoint runs/x/last.pt
    """
    lookup({"onnx": None}, fmt, "export format")
    result = api.export(checkpoint, out=out, opset=opset, half=half, parsing=parsing)
    table = Table(title=f"{result.onnx}: checked against PyTorch on {result.check_images} crops")
    for col in ("output", "max abs difference", "tolerance"):
        table.add_column(col, justify="left" if col == "output" else "right")
    report = result.to_json()
    for name, diff in result.max_abs_diff.items():
        table.add_row(
            name,
            f"{diff:.2e}" + (" of pixels" if name == "parsing" else ""),
            f"{report['tolerance']:.0e}" if name != "parsing" else "",
        )
    table.add_row(
        "top-10 rankings",
        "equal" if result.ranking_equal else f"overlap {result.ranking_overlap:.2f}",
        f"{report['overlap_required']:.2f}",
    )
    _emit(report, [table], json_out)


visualize_app = typer.Typer(
    no_args_is_help=True, help="Draw PNG pictures: labels, parsing, rankings, curves, embeddings."
)
app.add_typer(visualize_app, name="visualize")
OutPng = Annotated[
    Path | None,
    _path("PNG to write (default: a figures/ folder next to the input).", "--out", kind="file", output=True),
]
FeaturesOpt = Annotated[Path, _path("Features file from `drop extract-features`.", "--features", kind="file")]


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DropError(f"{text!r} is not a comma-separated list of whole numbers.", hint="E.g. 3,17,42") from None


def _emit_images(result, json_out: bool) -> None:
    for path in result.images:
        _ui.info(f"wrote {path}")
    _emit(result.to_json(), [], json_out)


@visualize_app.command("labels")
@_command
def visualize_labels(
    labels: Annotated[Path, _path("Labels file from `drop prepare-data`.", kind="file")],
    root: Annotated[
        Path | None,
        _path("Folder that contains the dataset folder (default: the labels file's folder).", kind="folder"),
    ] = None,
    split: Annotated[str | None, typer.Option(help="train | query | gallery (default: all images).")] = None,
    count: Annotated[int, typer.Option(help="How many images (drawn at random with --seed).", min=1)] = 16,
    images: Annotated[str | None, typer.Option(help="Comma-separated image paths to show instead.")] = None,
    seed: SeedOpt = 0,
    out: OutPng = None,
    json_out: JsonOpt = False,
) -> None:
    """Images with their pseudo-label overlay, a colour legend, flagged images marked.

    Example: drop visualize labels --labels data/synthetic/labels-pose-eight.h5 --split query
    """
    paths = [p.strip() for p in images.split(",")] if images else None
    _emit_images(
        api.visualize_labels(labels, root=root, split=split, count=count, images=paths, seed=seed, out=out), json_out
    )


@visualize_app.command("parsing")
@_command
def visualize_parsing(
    features: Annotated[Path | None, _path("Features file with parsing maps.", kind="file")] = None,
    checkpoint: Annotated[Path | None, _path("Or a checkpoint: its features are extracted first.", kind="file")] = None,
    labels: Annotated[Path | None, _path("Labels file, to show the pseudo labels alongside.", kind="file")] = None,
    split: Annotated[str, typer.Option(help="query | gallery.")] = "query",
    count: Annotated[int, typer.Option(help="How many images.", min=1)] = 8,
    seed: SeedOpt = 0,
    root: MovedRootOpt = None,
    out: OutPng = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted parsing next to the pseudo label of the same image, with per-part visibility.

    Example: drop visualize parsing --features runs/synthetic-drop/features.h5 --labels data/synthetic/labels-pose-eight.h5
    """
    _emit_images(
        api.visualize_parsing(
            features, labels=labels, split=split, count=count, seed=seed, out=out, checkpoint=checkpoint, root=root
        ),
        json_out,
    )


@visualize_app.command("ranking")
@_command
def visualize_ranking(
    features: FeaturesOpt,
    distance: DistanceOpt = EVAL.distance,
    visibility: VisibilityOpt = True,
    rerank: RerankOpt = False,
    k1: K1Opt = EVAL.rerank_k1,
    k2: K2Opt = EVAL.rerank_k2,
    lambda_value: LambdaOpt = EVAL.rerank_lambda,
    queries: Annotated[str | None, typer.Option(help="Query indices, comma-separated.")] = None,
    ids: Annotated[str | None, typer.Option(help="Query identities, comma-separated.")] = None,
    worst: Annotated[int | None, typer.Option(help="The N queries with the lowest AP.", min=1)] = None,
    count: Annotated[int, typer.Option(help="Queries to draw when none are chosen.", min=1)] = 10,
    k: Annotated[int, typer.Option("-k", "--top", help="Gallery images per query.", min=1)] = 10,
    root: MovedRootOpt = None,
    out: OutPng = None,
    json_out: JsonOpt = False,
) -> None:
    """One row per query: the query, its top-k gallery images (green: same id, red: not), distances,
    and the parts visible in both.

    Example: drop visualize ranking --features runs/synthetic-drop/features.h5 --worst 10
    """
    result = api.visualize_ranking(
        features,
        distance=distance,
        visibility=visibility,
        rerank=rerank,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        queries=_ints(queries),
        query_ids=_ints(ids),
        worst=worst,
        count=count,
        k=k,
        out=out,
        root=root,
    )
    _emit_images(result, json_out)


@visualize_app.command("training")
@_command
def visualize_training(
    run_dir: Annotated[Path, _path("A run folder made by `drop train`.", kind="folder", argument=True)],
    out: OutPng = None,
    json_out: JsonOpt = False,
) -> None:
    """Loss terms, learning rate, rank-1, mAP and mINP against epochs.

    Example: drop visualize training runs/synthetic-drop
    """
    _emit_images(api.visualize_training(run_dir, out=out), json_out)


@visualize_app.command("embeddings")
@_command
def visualize_embeddings(
    features: FeaturesOpt,
    split: Annotated[str, typer.Option(help="query | gallery.")] = "gallery",
    row: Annotated[str, typer.Option(help="global, foreground or a part name.")] = "global",
    num_ids: Annotated[int, typer.Option(help="How many identities.", min=1)] = 10,
    ids: Annotated[str | None, typer.Option(help="These identities instead, comma-separated.")] = None,
    method: Annotated[str, typer.Option(help="tsne | pca.")] = "tsne",
    seed: Annotated[int, typer.Option(help="Seed of the identity choice and t-SNE.", min=0)] = 0,
    out: OutPng = None,
    json_out: JsonOpt = False,
) -> None:
    """A 2-D projection of one embedding, coloured by identity.

    Example: drop visualize embeddings --features runs/synthetic-drop/features.h5 --row torso
    """
    _emit_images(
        api.visualize_embeddings(
            features, split=split, row=row, num_ids=num_ids, ids=_ints(ids), method=method, seed=seed, out=out
        ),
        json_out,
    )


@app.command("quickstart")
@_command
def quickstart(
    out: Annotated[Path, _path("Folder for everything it makes.", kind="folder", output=True)] = Path("quickstart"),
    ids: IdsOpt = 100,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The whole loop on a CPU in minutes: synthetic set, labels, training, features, evaluation, pictures.

    Example: drop quickstart --out quickstart
    """
    result = api.quickstart(out, ids=ids, overrides=set_ or [], progress=not json_out)
    table = Table(title=f"quickstart: {result.labeler} labels, run {result.run_dir} ({result.seconds / 60:.1f} min)")
    for col in ("distance", "re-ranking", "rank-1", "rank-5", "mAP", "mINP"):
        table.add_column(col, justify="left" if col == "distance" else "right")
    for row in result.evaluate:
        table.add_row(
            row["distance"],
            "on" if row["rerank"] else "off",
            *(f"{100 * row[k]:.1f}" for k in ("rank1", "rank5", "mAP", "mINP")),
        )
    files = Table(title="where everything is", show_header=False)
    for what, path in (("run folder", result.run_dir), *(("picture", p) for p in result.images)):
        files.add_row(what, str(path))
    _emit(result.to_json(), [table, files], json_out)


@app.command("ablation-study")
@_command
def ablation_study(
    out: Annotated[Path, _path("Folder for the runs and study.json / study.csv.", kind="folder", output=True)] = Path(
        "study"
    ),
    recipe: Annotated[
        str | None,
        typer.Option(
            help="A DROP recipe to study on its own dataset (e.g. occluded_duke "
            "with --set data.root=~/data); default: the synthetic set."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Training seeds, comma-separated.")] = "0,1,2",
    ids: IdsOpt = 100,
    labeler: Annotated[
        str, typer.Option(help="Labels of the synthetic set: pose, or synthetic (the ground truth).")
    ] = "pose",
    configs: Annotated[
        str | None, typer.Option(help="A subset of the configurations, comma-separated (default: all).")
    ] = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the global baseline, the BPBreID-equivalent, DROP and DROP without each component, for every
    seed; a table of mean and std of the final epochs' mAP and rank-1 (and, on the synthetic set, the
    parsing mIoU), with the paper's numbers where it reports them.

    Example: drop ablation-study --recipe occluded_duke --set data.root=~/data --seeds 0,1,2
    """
    chosen = tuple(c.strip() for c in configs.split(",")) if configs else None
    study = projects.ablation_study
    result = study.run_study(
        out,
        recipe=recipe,
        seeds=tuple(_ints(seeds) or ()),
        ids=ids,
        labeler=labeler,
        configs=chosen,
        overrides=set_ or [],
        progress=not json_out,
    )
    synthetic = recipe is None
    table = Table(
        title=f"{result.title}{', occluded queries' if synthetic else ''} (final epoch, mean ± std over "
        f"seeds): {result.json_path}"
    )
    table.add_column("configuration", no_wrap=True)  # the names are what the table is read by
    headers = {"runs": "runs", "mAP": "mAP", "rank1": "rank-1", "parts_miou": "mIoU l/r", "eight_miou": "mIoU 8"}
    metrics = study.METRICS if synthetic else study.METRICS[:2]  # mIoU l/r: left/right merged; 8: eight parts
    paper = any(row["paper_mAP"] is not None for row in result.summary)
    for metric in ("runs", *metrics):
        table.add_column(headers[metric], justify="right")
    if paper:
        table.add_column("paper R-1 / mAP", justify="right")
    for row in result.summary:
        cells = [
            f"{100 * row[f'{m}_mean']:.1f}±{100 * row[f'{m}_std']:.1f}" if row[f"{m}_mean"] is not None else "-"
            for m in metrics
        ]
        if paper:
            cells.append(f"{row['paper_rank1']:.1f} / {row['paper_mAP']:.1f}" if row["paper_mAP"] is not None else "")
        table.add_row(row["config"], str(row["runs"]), *cells)
    _emit(result.to_json(), [table], json_out)


def main(argv: list[str] | None = None) -> int:
    """Run ``drop`` (``argv``: the arguments, default ``sys.argv[1:]``); returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return app(args, prog_name="drop", standalone_mode=False) or 0
    except click_exceptions.NoArgsIsHelpError as e:  # the help is already printed
        return e.exit_code
    except click_exceptions.ClickException as e:
        context = getattr(e, "ctx", None)
        command = context.command_path if context is not None else "drop"
        message = e.format_message().rstrip()
        _error(
            message if message.endswith(".") else f"{message}.", f"See `{command} --help`.", json_out="--json" in args
        )
        return e.exit_code
    except typer.Abort:
        _ui.error("interrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
