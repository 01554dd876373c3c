"""Parity of drop's BPBreID-equivalent with BPBreID's own code (VlSomers/bpbreid).

Builds BPBreID's model (HRNet-W32, ``eight`` parts, 256x128, after-pooling reductions) from its
source and drop's from the ``bpbreid_occluded_duke`` recipe, loads one set of weights into both
through an explicit parameter-name mapping (``PREFIXES``; every tensor is mapped, or listed in
``UNUSED`` with the reason it enters no output, which the harness checks: those parameters get no
gradient), runs the same batch (16 images and part masks, 4 identities x 4) through both and
compares, in fp32 on the CPU: the backbone map F, the parsing logits, every embedding, the
visibility, each GiLt loss term (global / foreground / concatenated-parts identity, part-averaged
triplet, pixel cross-entropy) and the total, the gradient of every mapped parameter after backward,
and, in eval mode, the test-time embeddings, visibility and query-gallery distance matrix of 8
query and 8 gallery images. Passing: every max abs difference <= 1e-4; for a gradient, the max abs
difference divided by the gradient's largest magnitude (a first-layer gradient sums 16 x 128 x 64
positions and reaches ~190 here, where float32 summation order alone moves it by ~1e-6 relative).

BPBreID's code (no network needed once it is on disk; this script copies none of it):

    # with the search tool's fetch verb (github:VlSomers/bpbreid), or a clone of the repository:
    git --git-dir=/work/.mirror/VlSomers+bpbreid/repo archive HEAD torchreid | tar -x -C /tmp/bpbreid
    python -m benchmarks.bpbreid_parity --bpbreid-src /tmp/bpbreid --json --out assets/bpbreid_parity.json

Only the modules the model and the losses need are loaded from that folder (``torchreid/models/
bpbreid.py`` and ``hrnet.py``, ``torchreid/losses/``, ``torchreid/metrics/distance.py``,
``torchreid/utils/constants.py`` and ``tensortools.py``); the package ``__init__`` files (which
import the whole training framework) are replaced by empty packages, and the few third-party
modules those files import but the compared code never uses (yacs's config node, torchmetrics'
accuracy, monai's focal and dice losses, BPBreID's writer) by small stand-ins defined below.
The glue that is BPBreID's engine code (the target argmax of ``combine_losses``, the test
embeddings of ``extract_test_embeddings``) is written here from that code's behaviour.

``--json`` prints ``{"compared": {name: max_abs_diff}, "passed": bool, ...}``; a failure exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from drop_cli.evaluation.scoring import make_setting, setting_distances
from drop_cli.features import extract_features
from drop_cli.model import build_model
from drop_cli.parts import FIRST_PART, FOREGROUND, GLOBAL, row_names
from drop_cli.recipe import load_recipe
from drop_cli.train.objective import Objective

RECIPE = "bpbreid_occluded_duke"
NUM_CLASSES = 702  # Occluded-Duke's training identities
TOLERANCE = 1e-4

# BPBreID parameter-name prefix -> drop's. Every BPBreID tensor matches one prefix, or one of UNUSED.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone_appearance_feature_extractor.", "backbone.model."),
    ("global_after_pooling_dim_reduce.layers.", "embedding_head.reduction.global."),
    ("foreground_after_pooling_dim_reduce.layers.", "embedding_head.reduction.foreground."),
    ("parts_after_pooling_dim_reduce.layers.", "embedding_head.reduction.parts."),
    ("pixel_classifier.bn.", "parsing_head.0."),
    ("pixel_classifier.classifier.", "parsing_head.1."),
    ("global_identity_classifier.bn.", "embedding_head.bnneck.global."),
    ("global_identity_classifier.classifier.", "embedding_head.classifier.global."),
    ("foreground_identity_classifier.bn.", "embedding_head.bnneck.foreground."),
    ("foreground_identity_classifier.classifier.", "embedding_head.classifier.foreground."),
    ("concat_parts_identity_classifier.bn.", "embedding_head.bnneck.parts."),
    ("concat_parts_identity_classifier.classifier.", "embedding_head.classifier.parts."),
)
# BPBreID tensors with no counterpart in drop, and why they enter no compared output and no loss.
UNUSED: dict[str, str] = {
    "backbone_appearance_feature_extractor.cls_head.": "HRNet's own 1x1 reduction, not run with "
    "dim_reduce 'after_pooling'",
    "background_after_pooling_dim_reduce.": "the background embedding: in no GiLt term, not a test embedding",
    "background_identity_classifier.": "the background embedding's classifier: in no GiLt term",
    "parts_identity_classifier.": "the per-part classifiers: GiLt weight parts.id is 0",
}
# Gradients reported one by one (the summary also has the maximum over every mapped parameter).
NAMED_GRADIENTS = (
    "backbone.model.conv1.weight",
    "backbone.model.stage4.2.fuse_layers.0.3.0.weight",
    "backbone.model.incre_modules.3.0.conv3.weight",
    "parsing_head.1.weight",
    "embedding_head.reduction.parts.0.weight",
    "embedding_head.reduction.foreground.0.weight",
    "embedding_head.classifier.parts.weight",
)


class ParityError(Exception):
    """The two models or their outputs cannot be put side by side (a mapping problem)."""


# ----------------------------------------------------------------------------- mapping and comparison


def map_state_dict(theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BPBreID's state dict renamed into drop's: every BPBreID entry mapped (or UNUSED), every drop
    entry provided once, with the same shape. A ParityError names the first entry that is not."""
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in theirs.items():
        if any(key.startswith(prefix) for prefix in UNUSED):
            continue
        rule = next(((a, b) for a, b in PREFIXES if key.startswith(a)), None)
        if rule is None:
            raise ParityError(f"BPBreID tensor {key} is not mapped to drop's model (and not listed as unused)")
        name = rule[1] + key[len(rule[0]) :]
        if name not in ours:
            raise ParityError(f"BPBreID tensor {key} maps to {name}, which drop's model does not have")
        if name in mapped:
            raise ParityError(f"drop tensor {name} is mapped twice (from {key})")
        if tuple(ours[name].shape) != tuple(tensor.shape):
            raise ParityError(f"{key} {tuple(tensor.shape)} and {name} {tuple(ours[name].shape)} differ in shape")
        mapped[name] = tensor
    missing = [name for name in ours if name not in mapped]
    if missing:
        raise ParityError(f"drop tensor {missing[0]} gets no BPBreID tensor ({len(missing)} in all)")
    return mapped


def unused_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """BPBreID's parameters under an UNUSED prefix."""
    return {k: p for k, p in model.named_parameters() if any(k.startswith(prefix) for prefix in UNUSED)}


def max_abs_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest absolute difference of two tensors of one shape (bool tensors: 1.0 where they differ)."""
    if tuple(ours.shape) != tuple(theirs.shape):
        raise ParityError(f"shapes differ: {tuple(ours.shape)} and {tuple(theirs.shape)}")
    if ours.numel() == 0:
        return 0.0
    return (ours.detach().double() - theirs.detach().double()).abs().max().item()


def compare(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """name -> max abs difference, for (ours, theirs) pairs."""
    return {name: max_abs_diff(ours, theirs) for name, (ours, theirs) in pairs.items()}


def relative_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``max_abs_diff`` over the largest magnitude of ``theirs`` (at least 1: small tensors compare absolutely)."""
    return max_abs_diff(ours, theirs) / max(1.0, theirs.detach().abs().max().item())


def passed(compared: dict[str, float], tolerance: float = TOLERANCE) -> bool:
    return all(value <= tolerance for value in compared.values())


# ----------------------------------------------------------------------------- BPBreID's code, loaded


class _ConfigNode(dict):
    """Stand-in for yacs' CfgNode: a dict with attribute access (what hrnet.py and bpbreid.py use)."""

    def __init__(self, *args, new_allowed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


class _Accuracy:
    """Stand-in for torchmetrics' Accuracy (the losses only log it)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return torch.tensor(0.0)

    def cuda(self):
        return self


class _Writer:
    """Stand-in for BPBreID's Writer: its statistics hooks do nothing here."""

    @staticmethod
    def current_writer():
        return None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _module(name: str, path: Path | None = None, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _load(name: str, file: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_bpbreid(src: str | Path) -> types.SimpleNamespace:
    """BPBreID's model, loss and distance modules from an extraction of its ``torchreid/`` package."""
    src = Path(src).expanduser()
    package = src / "torchreid" if (src / "torchreid").is_dir() else src
    if not (package / "models" / "bpbreid.py").is_file():
        raise ParityError(
            f"{src} holds no BPBreID torchreid package (no models/bpbreid.py); see this "
            "script's docstring for how to extract it"
        )
    _module("yacs", Path("."))
    _module("yacs.config", CfgNode=_ConfigNode)
    _module("torchmetrics", Accuracy=_Accuracy)
    _module("monai", Path("."))
    _module("monai.losses", FocalLoss=object, DiceLoss=object)
    _module("torchreid", package)
    _module("torchreid.utils", package / "utils")
    constants = _load("torchreid.utils.constants", package / "utils" / "constants.py")
    _load("torchreid.utils.tensortools", package / "utils" / "tensortools.py")
    _module("torchreid.utils.writer", Writer=_Writer)
    models = _module("torchreid.models", package / "models")
    hrnet = _load("torchreid.models.hrnet", package / "models" / "hrnet.py")

    def build_backbone(name, num_classes, loss, pretrained, **kwargs):  # torchreid.models.build_model for hrnet32
        if name != "hrnet32":
            raise ParityError(f"the harness builds BPBreID's hrnet32 backbone only, not {name}")
        return hrnet.hrnet32(num_classes, loss=loss, pretrained=pretrained, **kwargs)

    models.build_model = build_backbone
    bpbreid = _load("torchreid.models.bpbreid", package / "models" / "bpbreid.py")
    _load("torchreid.losses", package / "losses" / "__init__.py")
    gilt = _load("torchreid.losses.GiLt_loss", package / "losses" / "GiLt_loss.py")
    bpa = _load("torchreid.losses.body_part_attention_loss", package / "losses" / "body_part_attention_loss.py")
    _module("torchreid.metrics", package / "metrics")
    distance = _load("torchreid.metrics.distance", package / "metrics" / "distance.py")
    return types.SimpleNamespace(
        BPBreID=bpbreid.BPBreID,
        GiLtLoss=gilt.GiLtLoss,
        BodyPartAttentionLoss=bpa.BodyPartAttentionLoss,
        distance=distance,
        c=constants,
    )


def bpbreid_config(parts_num: int) -> _ConfigNode:
    """``config.model.bpbreid`` of configs/bpbreid/bpbreid_occ_duke_train.yaml over default_config.py."""
    return _ConfigNode(
        masks=_ConfigNode(parts_num=parts_num),
        shared_parts_id_classifier=False,
        test_use_target_segmentation="none",
        training_binary_visibility_score=True,
        testing_binary_visibility_score=True,
        backbone="hrnet32",
        last_stride=1,
        dim_reduce="after_pooling",
        dim_reduce_output=512,
        hrnet_pretrained_path="",
        normalization="identity",
        pooling="gwap",
        learnable_attention_enabled=True,
    )


def gilt_weights(c) -> dict:
    """The GiLt weights of bpbreid_occ_duke_train.yaml."""
    return {
        c.GLOBAL: {"id": 1.0, "tr": 0.0},
        c.FOREGROUND: {"id": 1.0, "tr": 0.0},
        c.CONCAT_PARTS: {"id": 1.0, "tr": 0.0},
        c.PARTS: {"id": 0.0, "tr": 1.0},
    }


# ----------------------------------------------------------------------------- the run


def _inputs(seed: int, n: int, height: int, width: int, num_parts: int) -> dict[str, torch.Tensor]:
    """Images, soft part masks at the image size (smooth blobs, BPBreID's mask format after its
    AddBackgroundMask), and 4 identities x n/4 images."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, height, width, generator=generator)
    coarse = 3 * torch.randn(n, num_parts + 1, height // 32, width // 32, generator=generator)
    masks = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False).softmax(dim=1)
    ids = torch.randperm(NUM_CLASSES, generator=generator)[:4]
    return {"images": images, "masks": masks, "pids": ids.repeat_interleave(n // 4)}


def run_parity(src: str | Path, seed: int = 0, batch: int = 16, overrides: list[str] = ()) -> dict:
    """Build both models, compare them on one batch; the report ``{"compared", "passed", ...}``.

    ``overrides`` change drop's recipe (``key=value``), e.g. to see which keys BPBreID's values need.
    """
    torch.use_deterministic_algorithms(False)
    torch.set_grad_enabled(True)
    bp = load_bpbreid(src)
    recipe = load_recipe(RECIPE, ["model.pretrained=false", *overrides])
    height, width = recipe.data.height, recipe.data.width
    num_parts = 8 if recipe.data.preset == "eight" else len(recipe.data.preset)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # hrnet.py prints its initialisation
        theirs = bp.BPBreID(NUM_CLASSES, False, "part_based", bpbreid_config(num_parts))
    with torch.no_grad():  # so that some parts are invisible: the last never wins a pixel, the one before rarely
        theirs.pixel_classifier.classifier.bias[-2:] = torch.tensor([-0.1, -1.0])
    ours = build_model(NUM_CLASSES, num_parts, ppe_height=height // 4, **dataclasses.asdict(recipe.model))
    ours.load_state_dict(map_state_dict(theirs.state_dict(), ours.state_dict()))
    captured = {}
    ours.reid_stream.register_forward_hook(lambda module, args, output: captured.__setitem__("F", output))

    x = _inputs(seed, batch, height, width, num_parts)
    theirs.train(), ours.train()
    emb, vis, id_scores, pixel_scores, spatial, _ = theirs(x["images"])
    out = ours(x["images"])
    c = bp.c
    # BPBreID's target: its ResizeMasks (nearest, to the feature size), then combine_losses' bilinear
    # resize (align_corners) to the logits' size and argmax.
    target_masks = F.interpolate(x["masks"], size=(height // 4, width // 4), mode="nearest")
    target_masks = F.interpolate(target_masks, size=pixel_scores.shape[2:], mode="bilinear", align_corners=True)
    gilt_loss, summary = bp.GiLtLoss(
        gilt_weights(c),
        use_visibility_scores=False,
        triplet_margin=0.3,
        loss_name="part_averaged_triplet_loss",
        writer=_Writer(),
    )(emb, vis, id_scores, x["pids"])
    pixel_loss, _ = bp.BodyPartAttentionLoss(loss_type="cl", label_smoothing=0.1)(pixel_scores, target_masks.argmax(1))
    their_total = gilt_loss + recipe.loss.parsing_weight * pixel_loss
    labels = x["masks"].argmax(1).to(torch.uint8)  # drop's label map: the argmax at the image size
    terms = Objective(recipe.loss)(out, labels, x["pids"], torch.arange(batch))
    our_total = sum(terms.values())

    pairs = {
        "backbone map F": (captured["F"], spatial),
        "parsing logits": (out.parsing_logits, pixel_scores),
        "embedding global": (out.embeddings[:, GLOBAL], emb[c.GLOBAL]),
        "embedding foreground": (out.embeddings[:, FOREGROUND], emb[c.FOREGROUND]),
        "embedding parts": (out.parts, emb[c.PARTS]),
        "embedding concatenated parts": (out.parts.flatten(1), emb[c.CONCAT_PARTS]),
        "bnneck global": (out.bn_embeddings[:, GLOBAL], emb[c.BN_GLOBAL]),
        "bnneck foreground": (out.bn_embeddings[:, FOREGROUND], emb[c.BN_FOREGROUND]),
        "bnneck concatenated parts": (out.bn_embeddings[:, FIRST_PART:].flatten(1), emb[c.BN_CONCAT_PARTS]),
        "identity logits global": (out.id_logits["global"], id_scores[c.GLOBAL]),
        "identity logits foreground": (out.id_logits["foreground"], id_scores[c.FOREGROUND]),
        "identity logits concatenated parts": (out.id_logits["parts"], id_scores[c.CONCAT_PARTS]),
        "visibility": (out.visibility, vis[c.PARTS]),
        "loss identity global": (terms["id_global"], summary[c.GLOBAL]["c"]),
        "loss identity foreground": (terms["id_foreground"], summary[c.FOREGROUND]["c"]),
        "loss identity concatenated parts": (terms["id_parts"], summary[c.CONCAT_PARTS]["c"]),
        "loss part-averaged triplet": (terms["part_triplet"], summary[c.PARTS]["t"]),
        "loss pixel cross-entropy (x 0.35)": (terms["parsing"], recipe.loss.parsing_weight * pixel_loss),
        "loss total": (our_total, their_total),
    }
    if set(terms) != {"id_global", "id_foreground", "id_parts", "part_triplet", "parsing"}:
        raise ParityError(f"drop's objective has other terms than GiLt's: {sorted(terms)}")
    our_total.backward()
    their_total.backward()
    their_params = dict(theirs.named_parameters())
    names = {rule[1] + k[len(rule[0]) :]: k for k in their_params for rule in PREFIXES if k.startswith(rule[0])}
    frozen = [name for name, p in ours.named_parameters() if p.requires_grad != their_params[names[name]].requires_grad]
    if frozen:
        raise ParityError(f"parameter {frozen[0]} is trained in one model and frozen in the other")
    grads = {name: (p.grad, their_params[names[name]].grad) for name, p in ours.named_parameters() if p.requires_grad}
    no_grad = [name for name, (a, b) in grads.items() if a is None or b is None]
    if no_grad:
        raise ParityError(f"parameter {no_grad[0]} got no gradient ({len(no_grad)} in all)")
    grad_diffs = {name: relative_diff(a, b) for name, (a, b) in grads.items()}
    compared = compare(pairs)
    compared.update({f"gradient {name} (relative)": grad_diffs[name] for name in NAMED_GRADIENTS})
    compared[f"gradient, max over all {len(grad_diffs)} parameters (relative)"] = max(grad_diffs.values())
    leaked = [k for k, p in unused_parameters(theirs).items() if p.grad is not None and p.grad.abs().max() > 0]
    if leaked:
        raise ParityError(f"BPBreID parameter {leaked[0]} is listed as unused but got a gradient")

    # Test time: 8 query and 8 gallery images, eval mode; BPBreID's test embeddings and distance.
    theirs.eval(), ours.eval()
    test = _inputs(seed + 1, batch, height, width, num_parts)
    with torch.no_grad():
        emb, vis, *_ = theirs(test["images"])
    their_features = F.normalize(torch.cat([emb[c.BN_FOREGROUND][:, None], emb[c.PARTS]], dim=1), p=2, dim=-1)
    their_visibility = torch.cat([vis[c.FOREGROUND][:, None], vis[c.PARTS]], dim=1)
    half = batch // 2
    their_dist, _ = bp.distance.compute_distance_matrix_using_bp_features(
        their_features[:half],
        their_features[half:],
        their_visibility[:half],
        their_visibility[half:],
        "mean",
        500,
        False,
        "euclidean",
    )
    loader = [{"image": test["images"], "pid": test["pids"], "camid": torch.arange(batch) % 2}]
    features = extract_features(
        ours,
        loader,
        torch.device("cpu"),
        parts=tuple(f"p{k}" for k in range(num_parts)),
        part_embeddings=recipe.eval.part_embeddings,
    )
    query, gallery = (
        types.SimpleNamespace(embeddings=features.embeddings[rows], visibility=features.visibility[rows])
        for rows in (slice(0, half), slice(half, batch))
    )
    our_dist = setting_distances(
        query, gallery, row_names([f"p{k}" for k in range(num_parts)]), make_setting(recipe.eval.distance)
    )
    compared.update(
        compare(
            {
                "test embeddings (bn_foreg + parts, normalised)": (
                    torch.from_numpy(features.embeddings[:, FOREGROUND:]),
                    their_features,
                ),
                "test visibility": (torch.from_numpy(features.visibility[:, FOREGROUND:]), their_visibility.float()),
                "test distance matrix (8 x 8)": (torch.from_numpy(our_dist), their_dist),
            }
        )
    )
    visible = out.visibility.float().mean(0).tolist()
    return {
        "recipe": RECIPE,
        "overrides": list(overrides),
        "batch": batch,
        "part_visible_share": visible,
        "input": [height, width],
        "parts": num_parts,
        "seed": seed,
        "tolerance": TOLERANCE,
        "mapped_tensors": len(ours.state_dict()),
        "unused_bpbreid_tensors": {prefix: reason for prefix, reason in UNUSED.items()},
        "compared": compared,
        "passed": passed(compared),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bpbreid-src", required=True, type=Path, help="folder holding an extraction of BPBreID's torchreid/ package"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change drop's recipe, e.g. model.foreground_pooling=weighted (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    try:
        report = run_parity(args.bpbreid_src, args.seed, overrides=args.overrides)
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report["compared"]))
        for name, value in report["compared"].items():
            print(f"{name:<{width}}  {value:.2e}  {'ok' if value <= TOLERANCE else 'FAIL'}")
        print(f"{'passed' if report['passed'] else 'FAILED'} (tolerance {TOLERANCE:g}, fp32, CPU)")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
