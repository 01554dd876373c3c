"""Recipes: typed, validated training configuration in plain YAML.

Precedence, lowest first: the dataclass defaults below < the recipe's ``base:`` file (one level, for
ablations) < the recipe file < ``--set key=value`` overrides. Values are parsed with
``yaml.safe_load`` and checked against the field types; an unknown key is an error that names the
closest valid key. The resolved recipe is frozen, written into the run folder, and components receive
plain values from it, never the recipe itself.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import DropError

_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class RecipeError(DropError):
    """A recipe file or override is missing, malformed, or has a wrong key or value."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # dataset key to train on (see `drop dataset-info --help`)
    root: str = "data"  # folder that contains the dataset folder
    labels: str | None = None  # labels file; default: <dataset folder>/labels-<labeler>-<preset>.h5
    labeler: str = "pose"  # which prepare-data labeler made the labels (for the default path)
    preset: Literal["eight", "five"] = "eight"  # body parts: K = 8 or 5
    test_dataset: str | None = None  # evaluate on another dataset (e.g. occluded_reid); default: dataset
    test_root: str | None = None  # its root; default: root
    height: int = 256  # input height in pixels
    width: int = 128  # input width in pixels
    pad: int = 10  # padding before the random crop
    flip: bool = True  # random horizontal flip (the paper turns it off on Occluded-Duke)
    random_erasing: float = 0.5  # probability; erased label pixels become background
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength (0 = off)
    num_instances: int = 4  # images per identity in a PK batch
    workers: int = 4  # DataLoader worker processes


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "hrnet_w32"  # timm model name (features_only); resnet50 uses last stride 1
    pretrained: bool = True  # ImageNet weights through timm (needs the network)
    weights: str | None = None  # local timm/torchvision state dict for the backbone
    embed_dim: int = 512  # D, the size of every embedding
    decouple: bool = True  # [DROP] parsing head reads its own features, not the ReID map F
    dpu: bool = True  # [DROP] detail-preserving upsampling for the parsing features
    ppe: bool = True  # [DROP] pedestrian position encoder on the parsing branch
    pooling: Literal["avg", "max", "avg+max"] = "avg+max"  # [DROP] parsing-guided part pooling
    dpu_channels: int = 64  # width of each DPU scale before fusion
    parsing_channels: int = 128  # width of the parsing features X_p


@dataclass(frozen=True)
class LossConfig:
    parts: bool = True  # False: the global-feature baseline (identity + batch-hard triplet on the global
    #                     embedding only; evaluate it with eval.distance: global)
    id_weight: float = 1.0  # identity cross-entropy on global, foreground and concatenated parts
    label_smoothing: float = 0.1  # of the identity cross-entropy
    triplet_weight: float = 1.0  # part triplet (PCT when pct, else BPBreID's part-averaged triplet)
    triplet_margin: float = 0.3
    pct: bool = True  # [DROP] part-aware compactness triplet instead of the part-averaged triplet
    compact_weight: float = 0.5  # weight of PCT's compactness term
    memory: bool = True  # [DROP] parts embedding memory bank adds positives/negatives to PCT
    memory_momentum: float = 0.5
    memory_start_epoch: int = 10  # memory regime starts after warm-up, once the bank is filled
    parsing_weight: float = 0.35  # spatially smoothed parsing loss
    parsing_smoothing: int = 3  # [DROP] averaging window over the one-hot target; 1 = plain CE
    parsing_label_smoothing: float = 0.1


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3.5e-4  # Adam learning rate
    weight_decay: float = 5e-4
    warmup_epochs: int = 10  # linear warm-up from lr / 100
    milestones: list[int] = field(default_factory=lambda: [40, 70])  # epochs where lr is multiplied by gamma
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 120
    batch_size: int = 64  # P x K images (K = data.num_instances)
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16)
    channels_last: bool = True  # on CUDA
    eval_every: int = 10  # evaluate on query/gallery every N epochs (and at the end)
    name: str | None = None  # run folder name; default <dataset>-<backbone>
    output: str = "runs"  # folder that holds run folders


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 128
    flip_tta: bool = False  # average embeddings of the image and its mirror
    distance: Literal["global", "foreground", "parts", "parts+foreground"] = "parts+foreground"
    rerank: bool = False


@dataclass(frozen=True)
class Recipe:
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


# ----------------------------------------------------------------------------- validation


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _coerce(value: Any, tp, key: str) -> Any:
    """``value`` checked against the type ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value):  # YAML 1.1 reads 3.5e-4 as a string
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise RecipeError(f"recipe key {key} must be {_type_name(tp)}, got {value!r}.")


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise RecipeError(f"recipe section {prefix.rstrip('.') or 'top level'} must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise RecipeError(f"unknown recipe key {full!r}.", hint=_suggest(str(key), prefix, names))
        tp = hints[key]
        kwargs[key] = (_build(tp, value, f"{full}.") if dataclasses.is_dataclass(tp)
                       else _coerce(value, tp, full))
    return cls(**kwargs)


def _suggest(key: str, prefix: str, names: list[str]) -> str:
    """The closest key in this section, else the same key in another section, else the valid keys."""
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"Did you mean {prefix}{close[0]}?"
    elsewhere = [f"{section}.{key}" for section, tp in typing.get_type_hints(Recipe).items()
                 if key in {f.name for f in dataclasses.fields(tp)}]
    return f"Did you mean {elsewhere[0]}?" if elsewhere else f"Valid keys here: {', '.join(names)}."


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        shipped = sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.rglob("*.yaml"))
        raise RecipeError(f"recipe {path} not found.", hint="Pass a YAML file or a shipped recipe: "
                                                            + ", ".join(shipped) + ".")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise RecipeError(f"recipe {path} is not valid YAML{at}: {getattr(e, 'problem', e)}.") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections (data, model, ...).")
    return data


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


def load_recipe(path: str | Path | None = None, overrides: list[str] = ()) -> Recipe:
    """Resolve a recipe: defaults < ``base:`` < file < ``overrides`` (``key=value`` strings).

    ``path`` is a YAML file or the name of a shipped recipe (see :func:`find_recipe`).
    """
    data: dict = {}
    if path is not None:
        path = find_recipe(path)
        data = _read_yaml(path)
        base = data.pop("base", None)
        if base is not None:
            base_data = _read_yaml((path.parent / base).resolve())
            if "base" in base_data:
                raise RecipeError(f"recipe {base} has a base of its own; only one level of base: is allowed.")
            data = _merge(base_data, data)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return _build(Recipe, data, "")


def recipe_from_dict(data: dict) -> Recipe:
    """A Recipe from its ``to_dict()`` form (e.g. stored in a checkpoint), validated like a file."""
    return _build(Recipe, data, "")


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
