"""benchmarks/bpbreid_parity.py's own machinery, on drop's side only (CI has no BPBreID code): the name
mapping refuses anything unmapped, and the comparison fails on a perturbed tensor."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks import bpbreid_parity as parity
from drop_cli.model import build_model
from drop_cli.recipe import load_recipe


def our_state() -> dict[str, torch.Tensor]:
    recipe = load_recipe(parity.RECIPE, ["model.pretrained=false", "model.backbone=test_resnet"])
    return build_model(5, 8, ppe_height=16, **dataclasses.asdict(recipe.model)).state_dict()


def as_bpbreid(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under BPBreID's names (the inverse of PREFIXES), plus tensors BPBreID has and drop not."""
    theirs = {}
    for name, tensor in ours.items():
        bp_prefix, our_prefix = next((a, b) for a, b in parity.PREFIXES if name.startswith(b))
        theirs[bp_prefix + name[len(our_prefix) :]] = tensor.clone()
    theirs["background_identity_classifier.bn.weight"] = torch.ones(512)
    theirs["parts_identity_classifier.3.classifier.weight"] = torch.zeros(5, 512)
    theirs["backbone_appearance_feature_extractor.cls_head.0.weight"] = torch.zeros(256, 1920, 1, 1)
    return theirs


def test_every_tensor_is_mapped_both_ways():
    ours = our_state()
    mapped = parity.map_state_dict(as_bpbreid(ours), ours)
    assert mapped.keys() == ours.keys()
    assert all(torch.equal(mapped[k], ours[k]) for k in ours)


def test_an_unmapped_bpbreid_tensor_is_named():
    ours = our_state()
    theirs = as_bpbreid(ours)
    theirs["foreground_attention_pooling_head.normalization.weight"] = torch.ones(3)
    with pytest.raises(
        parity.ParityError, match="foreground_attention_pooling_head.normalization.weight is not mapped"
    ):
        parity.map_state_dict(theirs, ours)


def test_a_drop_tensor_without_a_bpbreid_one_is_named():
    ours = our_state()
    theirs = as_bpbreid(ours)
    del theirs["pixel_classifier.classifier.bias"]
    with pytest.raises(parity.ParityError, match="drop tensor parsing_head.1.bias gets no BPBreID tensor"):
        parity.map_state_dict(theirs, ours)
    theirs = as_bpbreid(ours)
    theirs["pixel_classifier.classifier.bias"] = torch.zeros(3)
    with pytest.raises(parity.ParityError, match="differ in shape"):
        parity.map_state_dict(theirs, ours)


def test_a_shared_reduction_cannot_be_mapped_onto_bpbreids_separate_ones():
    recipe = load_recipe(
        parity.RECIPE, ["model.pretrained=false", "model.backbone=test_resnet", "model.reduction=shared"]
    )
    shared = build_model(5, 8, ppe_height=16, **dataclasses.asdict(recipe.model)).state_dict()
    with pytest.raises(parity.ParityError, match="global_after_pooling_dim_reduce.layers.0.weight maps to"):
        parity.map_state_dict(as_bpbreid(our_state()), shared)


def test_the_comparison_fails_on_a_perturbed_tensor():
    a = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    same = parity.compare({"x": (a, a.clone()), "flags": (a > 0, a > 0)})
    assert same == {"x": 0.0, "flags": 0.0} and parity.passed(same)
    b = a.clone()
    b[2, 3] += 2e-4
    moved = parity.compare({"x": (b, a)})
    assert moved["x"] == pytest.approx(2e-4, rel=1e-3) and not parity.passed(moved)
    flipped = (a > 0).clone()
    flipped[0, 0] = ~flipped[0, 0]
    assert parity.compare({"flags": (flipped, a > 0)}) == {"flags": 1.0}
    with pytest.raises(parity.ParityError, match="shapes differ"):
        parity.compare({"x": (a, a.T)})
    big = (a * 100).double()
    assert parity.relative_diff(big + 1e-3, big) == pytest.approx(1e-3 / big.abs().max().item())


def test_without_bpbreids_code_the_harness_says_so(tmp_path, capsys):
    assert parity.main(["--bpbreid-src", str(tmp_path)]) == 1
    assert "holds no BPBreID torchreid package" in capsys.readouterr().err
