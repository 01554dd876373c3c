"""Recipes: typed, validated training configuration in plain YAML.

Precedence, lowest first: the dataclass defaults below < each recipe file in order (a file may
name ``base:`` files, one level, merged first) < ``--set key=value`` overrides. Base-free files
(``ablations/*.yaml``) stack on any recipe: ``drop train --recipe occluded_duke --recipe ablations/no_dpu``.
Values are parsed with ``yaml.safe_load`` and checked against the field types; an unknown key is an
error that names the closest valid key. The resolved recipe is frozen, written into the run folder,
and components receive plain values from it, never the recipe itself.

The defaults are BPBreID's (VlSomers/bpbreid, ``configs/bpbreid/bpbreid_occ_duke_train.yaml`` and
``default_config.py``) [base] with DROP's components switched on [paper]; every other choice is
labelled [ours]. ``version`` is the schema: a recipe stored by an older drop (in a checkpoint) gets
the values of the keys added since that reproduce what that drop did (``_MIGRATIONS``).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from .errors import RecipeError

_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
SCHEMA_VERSION = 3
# torch.compile modes of the training forward (drop_cli.train.step.compiled); off: eager
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric recipe key (``Annotated[int, Range(...)]``), checked on load; the
    command-line options that set the same value read it too (``option_range``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is not valid
    high_open: bool = False
    odd: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return not self.odd or value % 2 == 1

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            interval = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            interval = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            interval = f"{'<' if self.high_open else '<='} {self.high:g}"
        return interval + (", odd" if self.odd else "")


PositiveInt = Annotated[int, Range(low=1)]
NonNegativeInt = Annotated[int, Range(low=0)]
PositiveFloat = Annotated[float, Range(low=0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(low=0)]
Probability = Annotated[float, Range(0, 1)]
Smoothing = Annotated[float, Range(0, 1, high_open=True)]  # label smoothing: 1 would leave no label


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # dataset key to train on (see `drop dataset-info --help`)
    root: str = "data"  # folder that contains the dataset folder
    labels: str | None = None  # labels file; default: <dataset folder>/labels-<labeler>-<preset>.h5
    labeler: str = "bpbreid"  # which prepare-data labeler made the labels [base: BPBreID's published masks]
    preset: Literal["eight", "five", "five_v"] = "eight"  # body parts [base: eight on occluded sets, five_v
    #                                                       on Market-1501/DukeMTMC]
    test_dataset: str | None = None  # evaluate on another dataset (e.g. occluded_reid); default: dataset
    test_root: str | None = None  # its root; default: root
    height: PositiveInt = 256  # input height in pixels
    width: PositiveInt = 128  # input width in pixels
    antialias: bool = False  # antialiased resizing; [base] false (OpenCV's bilinear, as albumentations)
    pad: NonNegativeInt = 10  # [base] zero padding before the random crop back to height x width
    flip: bool = False  # random horizontal flip [base: only the Occluded-REID recipe flips]
    flip_swap_sides: bool = False  # a flip swaps left/right labels [ours]; [base] false: the masks are
    #                                mirrored with their channels unchanged
    random_erasing: Probability = 0.5  # [base] probability of erasing a box; erased label pixels become background
    erasing: Literal["box", "zhong"] = "box"  # [base] box: one box of 15-65% of the height and of the width,
    #                                           filled with 0.485/0.456/0.406 in the normalised image;
    #                                           zhong [ours]: 2-40% of the area, aspect 0.3-3.3, filled with 0
    color_jitter: Probability = 0.0  # probability of colour jitter [base: 0.5 on Occluded-REID, else off]
    jitter_brightness: Probability = 0.2  # [base] brightness factor range 1 +- this
    jitter_contrast: Probability = 0.15  # [base]
    jitter_saturation: Probability = 0.0  # [base]
    skip_flagged: bool = True  # [ours] leave out of training the images prepare-data flagged (unreadable, no
    #                            person found, no BPBreID mask); the run folder's flagged.txt lists them
    num_instances: PositiveInt = 4  # images per identity in a PK batch [base]
    workers: NonNegativeInt = 4  # DataLoader worker processes


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "hrnet_w32"  # timm model name (features_only) [base]; resnet50 uses last stride 1
    pretrained: bool = True  # ImageNet weights through timm (needs the network)
    weights: str | None = None  # local timm/torchvision state dict for the backbone
    embed_dim: PositiveInt = 512  # D, the size of every embedding [base]
    decouple: bool = True  # [paper] parsing head reads its own features, not the ReID map F
    dpu: bool = True  # [paper] detail-preserving upsampling for the parsing features (layers [ours])
    ppe: bool = True  # [paper] pedestrian position encoder on the parsing branch (form [ours])
    pooling: Literal["avg", "max", "avg+max"] = "avg+max"  # [paper] weighted average and max (their sum [ours]);
    #                                                        avg is BPBreID's
    foreground_pooling: Literal["mean", "weighted"] = "mean"  # [base] spatial mean of mask x F; weighted [ours]
    reduction: Literal["separate", "shared"] = "separate"  # [base] after-pooling reductions per embedding
    #                                                        type; shared: one for all [ours]
    parsing_init: Literal["normal", "kaiming"] = "normal"  # parsing head conv: [base] N(0, 0.001); kaiming [ours]
    align_corners: bool = True  # [base] of the ReID stream's bilinear upsampling
    dpu_channels: PositiveInt = 64  # [ours] width of each DPU scale before fusion
    parsing_channels: PositiveInt = 128  # [ours] width of the parsing features X_p


@dataclass(frozen=True)
class LossConfig:
    parts: bool = True  # False: the global-feature baseline (identity + batch-hard triplet on the global
    #                     embedding only; evaluate it with eval.distance: global)
    id_weight: NonNegativeFloat = 1.0  # [base] identity cross-entropy on global, foreground and concatenated parts
    label_smoothing: Smoothing = 0.1  # [base] of the identity cross-entropy
    triplet_weight: NonNegativeFloat = 1.0  # [base] BPBreID's part-averaged batch-hard triplet on the part embeddings
    triplet_margin: NonNegativeFloat = 0.3  # [base]
    triplet_visibility: bool = False  # [base] false: all parts averaged (mask_filtering_training: False);
    #                                   true: only the parts visible in both images [ours]
    foreground_triplet_weight: NonNegativeFloat = 0.0  # [base] batch-hard triplet on the foreground embedding (1 on
    #                                         Market-1501 and DukeMTMC)
    pct: bool = True  # [paper] part-aware compactness triplet, added to the terms above (form [ours])
    pct_weight: NonNegativeFloat = 1.0  # [ours] weight of PCT's triplet term (its compactness term: compact_weight)
    pct_margin: NonNegativeFloat = 0.3  # [ours] PCT's triplet margin
    pct_normalize: bool = True  # [ours] PCT compares L2-normalised part embeddings
    compact_weight: NonNegativeFloat = 0.5  # [ours] weight of PCT's compactness term
    memory: bool = True  # [paper] parts embedding memory bank: adds negatives to PCT
    memory_positives: bool = False  # [ours] the memory also gives hard positives and identity centres
    memory_momentum: Probability = 0.5  # [ours]
    memory_start_epoch: NonNegativeInt = 10  # [paper: memory-based regime] after warm-up, once the bank is filled
    parsing_weight: NonNegativeFloat = 0.35  # [base] pixel-wise part classification (0.7 on Occluded-REID)
    parsing_smoothing: Annotated[int, Range(low=1, odd=True)] = (
        3  # [paper: spatially smoothed parsing loss] 3x3 average of the one-hot target
    )
    #                             [ours]; 1 = BPBreID's plain cross-entropy
    parsing_label_smoothing: Smoothing = 0.1  # [base]
    parsing_target_resize: Literal["nearest", "nearest-exact"] = "nearest"  # labels -> parsing map size:
    #                              [base] nearest (each cell's top-left pixel); nearest-exact: its centre [ours]


@dataclass(frozen=True)
class OptimConfig:
    lr: PositiveFloat = 3.5e-4  # [base] Adam learning rate
    weight_decay: NonNegativeFloat = 5e-4  # [base]
    warmup_epochs: NonNegativeInt = 10  # [base] linear warm-up from lr / 100
    milestones: list[PositiveInt] = field(
        default_factory=lambda: [40, 70]
    )  # [base] epochs where lr is multiplied by gamma
    gamma: PositiveFloat = 0.1  # [base]


@dataclass(frozen=True)
class TrainConfig:
    epochs: PositiveInt = 120  # [base]; the final epoch is the reported result
    batch_size: PositiveInt = 64  # [base] the global batch, P x K images (K = data.num_instances), split over the GPUs
    seed: NonNegativeInt = 0
    amp: bool = True  # [ours] mixed precision on CUDA (bf16 where supported, else fp16)
    channels_last: bool = True  # [ours] on CUDA
    compile: CompileMode = "off"  # [ours] torch.compile the
    #                        training forward with this mode; reduce-overhead also replays it as CUDA graphs
    sync_bn: bool = False  # under torchrun on CUDA: batch-norm statistics over the global batch; false:
    #                        per GPU, as BPBreID's DataParallel (the authors' 2-GPU training)
    eval_every: PositiveInt = 10  # evaluate on query/gallery every N epochs (and at the end)
    name: str | None = None  # run folder name; default <dataset>-<backbone>
    output: str = "runs"  # folder that holds run folders


@dataclass(frozen=True)
class EvalConfig:
    batch_size: PositiveInt = 128
    flip_tta: bool = False  # average embeddings of the image and its mirror [ours]
    distance: Literal["global", "foreground", "parts", "parts+foreground"] = "parts+foreground"  # [base]
    part_embeddings: Literal["pre_bnneck", "bnneck"] = "pre_bnneck"  # [base] test features: BNNeck'd
    #                              foreground and pre-BNNeck parts (test_embeddings: [bn_foreg, parts])
    rerank: bool = False  # k-reciprocal re-ranking (Zhong et al., CVPR 2017) of the evaluation
    rerank_k1: PositiveInt = 20  # its k1 (Zhong et al.'s default; also `drop evaluate`'s)
    rerank_k2: PositiveInt = 6  # its k2
    rerank_lambda: Probability = 0.3  # its lambda, the weight of the original distance


@dataclass(frozen=True)
class Recipe:
    version: int = SCHEMA_VERSION  # the recipe schema
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _v1_loss(loss: dict) -> dict:
    """drop 0.1's objective: PCT replaced the part triplet, mined memory positives, masked triplets."""
    pct = loss.get("pct", True)
    return {
        **loss,
        "triplet_visibility": True,
        "foreground_triplet_weight": 0.0,
        "memory_positives": True,
        "pct_normalize": True,
        "pct_margin": loss.get("triplet_margin", 0.3),
        "pct_weight": loss.get("triplet_weight", 1.0) if pct else 1.0,
        "triplet_weight": 0.0 if pct else loss.get("triplet_weight", 1.0),
        "parsing_target_resize": "nearest-exact",
    }


def _v1_data(data: dict) -> dict:
    """drop 0.1's data: swapped sides on flips, Zhong's erasing, antialiasing, flagged images trained on,
    and a colour jitter of one strength, always applied (``color_jitter`` was that strength; now it is a
    probability)."""
    strength = data.get("color_jitter", 0.0)
    return {
        **data,
        "flip_swap_sides": True,
        "erasing": "zhong",
        "antialias": True,
        "color_jitter": 1.0 if strength else 0.0,
        "jitter_brightness": strength,
        "jitter_contrast": strength,
        "jitter_saturation": strength,
    }


# Stored schema version -> section -> a function from that version's section to the next version's:
# the keys added since get the values that reproduce what the older drop did.
_MIGRATIONS: dict[int, dict[str, Any]] = {
    1: {
        "data": _v1_data,
        "model": lambda model: {
            **model,
            "foreground_pooling": "weighted",
            "reduction": "shared",
            "parsing_init": "kaiming",
            "align_corners": False,
        },
        "loss": _v1_loss,
        "train": lambda train: {**train, "sync_bn": False},
        "eval": lambda eval_: {**eval_, "part_embeddings": "bnneck"},
    },
    # 2 -> 3: re-ranking's parameters became recipe keys (they were always these values); flagged
    # images were trained on before data.skip_flagged.
    2: {
        "data": lambda data: {"skip_flagged": False, **data},
        "eval": lambda eval_: {"rerank_k1": 20, "rerank_k2": 6, "rerank_lambda": 0.3, **eval_},
    },
}


def _migrate(data: dict, version: int) -> dict:
    """``data``, a stored recipe of schema ``version``, in the current schema with that version's behaviour."""
    data = dict(data)
    for old in range(version, SCHEMA_VERSION):
        for section, upgrade in _MIGRATIONS[old].items():
            if isinstance(data.get(section, {}), dict):
                data[section] = upgrade(data.get(section, {}))
    data["version"] = SCHEMA_VERSION
    return data


# ----------------------------------------------------------------------------- validation


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        return " ".join([_type_name(base), *(str(m) for m in meta if isinstance(m, Range))])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _coerce(value: Any, tp, key: str) -> Any:
    """``value`` checked against the type ``tp`` (ints are accepted for floats) and its range."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        value = _coerce(value, base, key)
        for valid in meta:
            if isinstance(valid, Range) and value not in valid:
                raise RecipeError(f"recipe key {key} must be {valid}, got {value!r}.", hint=_RANGE_HINT)
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except RecipeError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, typing.get_args(tp)[0], key) for v in value]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _YAML11_FLOAT.fullmatch(value):  # YAML 1.1 reads 3.5e-4 as a string
            number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise RecipeError(f"recipe key {key} must be a finite number, got {value!r}.")
            return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise RecipeError(f"recipe key {key} must be {_type_name(tp)}, got {value!r}.")


_RANGE_HINT = "`drop recipe keys` lists every key with its valid values."


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise RecipeError(f"recipe section {prefix.rstrip('.') or 'top level'} must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise RecipeError(f"unknown recipe key {full!r}.", hint=_suggest(str(key), prefix, names))
        tp = hints[key]
        kwargs[key] = _build(tp, value, f"{full}.") if dataclasses.is_dataclass(tp) else _coerce(value, tp, full)
    return cls(**kwargs)


def _suggest(key: str, prefix: str, names: list[str]) -> str:
    """The closest key in this section, else the same key in another section, else the valid keys."""
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"Did you mean {prefix}{close[0]}?"
    elsewhere = [
        f"{section}.{key}"
        for section, tp in typing.get_type_hints(Recipe).items()
        if dataclasses.is_dataclass(tp) and key in {f.name for f in dataclasses.fields(tp)}
    ]
    return f"Did you mean {elsewhere[0]}?" if elsewhere else f"Valid keys here: {', '.join(names)}."


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _shipped() -> list[str]:
    return sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.rglob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise RecipeError(
            f"recipe {path} not found.", hint="Pass a YAML file or a shipped recipe: " + ", ".join(_shipped()) + "."
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {path} is not a text file.", hint="A recipe is YAML text (see recipes/).") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise RecipeError(f"recipe {path} is not valid YAML{at}: {getattr(e, 'problem', e)}.") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections (data, model, ...).")
    return data


def _read_with_bases(path: Path) -> dict:
    """A recipe file merged over its ``base:`` files (a name or a list, relative to the file, base-free)."""
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        if not isinstance(base, str):
            raise RecipeError(f"recipe {path}: base must be a file name or a list of them, got {base!r}.")
        base_data = _read_yaml((path.parent / base).resolve())
        if "base" in base_data:
            raise RecipeError(
                f"recipe {base} has a base of its own; only one level of base: is allowed.",
                hint="Stack the files instead: base: [first.yaml, second.yaml].",
            )
        merged = _merge(merged, base_data)
    return _merge(merged, data)


def parse_override(text: str) -> dict:
    """``"optim.lr=1e-4"`` -> ``{"optim": {"lr": 0.0001}}`` (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"override {text!r} is not key=value.", hint="Example: --set optim.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


RECIPES_DIR = Path(__file__).parent / "recipes"


def find_recipe(name: str | Path) -> Path:
    """A recipe file: the path itself, or the name of a recipe shipped with drop (``synthetic``,
    ``occluded_duke``, ``ablations/no_dpu``, ...)."""
    path = Path(name).expanduser()
    if path.exists() or path.suffix in (".yaml", ".yml") or not (RECIPES_DIR / f"{name}.yaml").is_file():
        return path
    return RECIPES_DIR / f"{name}.yaml"


def load_recipe(paths: str | Path | Sequence[str | Path] | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """Resolve a recipe: defaults < each file of ``paths`` in order (with its bases) < ``overrides``.

    Each path is a YAML file or the name of a shipped recipe (see :func:`find_recipe`). A file after
    the first that sets no ``train.name`` appends its name to the run name (``occluded_duke-drop-no_dpu``).
    """
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    data: dict = {}
    for i, name in enumerate(paths):
        path = find_recipe(name)
        layer = _read_with_bases(path)
        run_name = data.get("train", {}).get("name") if isinstance(data.get("train"), dict) else None
        if i > 0 and run_name and not (isinstance(layer.get("train"), dict) and "name" in layer["train"]):
            layer = _merge(layer, {"train": {"name": f"{run_name}-{path.stem}"}})
        data = _merge(data, layer)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return _checked(_build(Recipe, data, ""))


def _checked(recipe: Recipe) -> Recipe:
    """The recipe, after the checks that involve several keys (one RecipeError line each)."""
    train, data = recipe.train, recipe.data
    if train.batch_size % data.num_instances:
        raise RecipeError(
            f"train.batch_size ({train.batch_size}) must be a multiple of data.num_instances ({data.num_instances}): "
            "a PK batch holds batch_size / num_instances identities.",
            hint="E.g. train.batch_size 64 with data.num_instances 4.",
        )
    milestones = recipe.optim.milestones
    if any(b <= a for a, b in itertools.pairwise(milestones)):
        raise RecipeError(f"optim.milestones must increase, got {milestones}.", hint="E.g. [40, 70].")
    if recipe.model.dpu and not recipe.model.decouple:
        raise RecipeError(
            "model.dpu: true needs model.decouple: true: without decoupling the parsing head reads "
            "the ReID map, so there is no parsing map for DPU to build.",
            hint="Set model.dpu: false, or model.decouple: true.",
        )
    return recipe


def recipe_from_dict(data: dict) -> Recipe:
    """A Recipe from its ``to_dict()`` form (e.g. stored in a checkpoint), validated like a file; a recipe
    of an older schema (drop 0.1's has no ``version``) first gets the behaviour of its version."""
    if not isinstance(data, dict):
        raise RecipeError(f"a stored recipe must be a mapping, got {type(data).__name__}.")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise RecipeError(
            f"recipe schema version {version!r} is not one this drop reads (1 to {SCHEMA_VERSION}).",
            hint="Upgrade drop to read recipes made by a newer version.",
        )
    return _checked(_build(Recipe, _migrate(data, version) if version < SCHEMA_VERSION else data, ""))


@dataclass(frozen=True)
class RecipeKey:
    """One key of the schema: ``section.name``, its type (with the valid range) and its default."""

    key: str
    type: Any
    default: Any

    @property
    def valid(self) -> str:
        return _type_name(self.type)


def recipe_keys() -> list[RecipeKey]:
    """Every key of the recipe schema, section by section (``version`` excluded)."""
    out = []
    for section, section_type in typing.get_type_hints(Recipe, include_extras=True).items():
        if isinstance(section_type, type) and dataclasses.is_dataclass(section_type):
            hints = typing.get_type_hints(section_type, include_extras=True)
            defaults = section_type()
            out += [
                RecipeKey(f"{section}.{f.name}", hints[f.name], getattr(defaults, f.name))
                for f in dataclasses.fields(section_type)
            ]
    return out


def key_range(key: str) -> Range | None:
    """The valid range of a numeric recipe key (``"eval.rerank_k1"``), for options that set the same value."""
    tp = next(k.type for k in recipe_keys() if k.key == key)
    if typing.get_origin(tp) is Annotated:
        return next((m for m in typing.get_args(tp)[1:] if isinstance(m, Range)), None)
    return None


def recipe_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two recipe dicts (``section.key``)."""
    keys = sorted(set(a) | set(b))
    out = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += recipe_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
