"""Recipes: typed fields, strict keys with suggestions, base files and --set overrides."""

from __future__ import annotations

import pytest

from drop_cli.errors import RecipeError
from drop_cli.recipe import SCHEMA_VERSION, Recipe, load_recipe, parse_override, recipe_differences, recipe_from_dict


def test_defaults_are_bpbreids_with_drop_on():
    r = load_recipe()
    assert (r.optim.lr, r.optim.weight_decay, r.optim.milestones, r.train.batch_size) == (3.5e-4, 5e-4, [40, 70], 64)
    assert (r.model.backbone, r.model.decouple, r.model.pooling, r.loss.parsing_weight) == (
        "hrnet_w32",
        True,
        "avg+max",
        0.35,
    )
    # [base] BPBreID's values of every switch DROP does not change
    assert (r.data.labeler, r.data.flip, r.data.flip_swap_sides, r.data.erasing, r.data.antialias) == (
        "bpbreid",
        False,
        False,
        "box",
        False,
    )
    assert (r.model.reduction, r.model.foreground_pooling, r.model.parsing_init, r.model.align_corners) == (
        "separate",
        "mean",
        "normal",
        True,
    )
    assert (r.loss.triplet_weight, r.loss.triplet_visibility, r.loss.parsing_target_resize) == (1.0, False, "nearest")
    assert (r.eval.part_embeddings, r.version) == ("pre_bnneck", SCHEMA_VERSION)


@pytest.mark.parametrize(
    "name,dataset,preset,flip,jitter,fg_triplet,parsing",
    [
        ("occluded_duke", "occluded_duke", "eight", False, 0.0, 0.0, 0.35),
        ("market1501", "market1501", "five_v", False, 0.0, 1.0, 0.35),
        ("dukemtmcreid", "dukemtmcreid", "five_v", False, 0.0, 1.0, 0.35),
        ("p_dukemtmc_reid", "p_dukemtmc_reid", "eight", False, 0.0, 0.0, 0.35),
        ("occluded_reid", "market1501", "eight", True, 0.5, 1.0, 0.7),
    ],
)
def test_paper_recipes_carry_bpbreids_per_dataset_choices(name, dataset, preset, flip, jitter, fg_triplet, parsing):
    """configs/bpbreid/*_train.yaml: masks, grouping, transforms, foreground triplet and pixel weight."""
    r = load_recipe(name)
    assert (r.data.dataset, r.data.labeler, r.data.preset, r.data.flip, r.data.color_jitter) == (
        dataset,
        "bpbreid",
        preset,
        flip,
        jitter,
    )
    assert (r.loss.foreground_triplet_weight, r.loss.parsing_weight, r.data.height, r.data.width) == (
        fg_triplet,
        parsing,
        256,
        128,
    )
    assert (r.data.jitter_brightness, r.data.jitter_contrast, r.data.jitter_saturation) == (0.2, 0.15, 0.0)
    assert r.model.decouple and r.loss.pct and r.loss.memory


def test_base_free_files_stack_on_any_recipe(tmp_path):
    r = load_recipe(["occluded_duke", "ablations/no_dpu"])
    assert r.model.dpu is False and r.data.dataset == "occluded_duke" and r.train.name == "occluded_duke-drop-no_dpu"
    assert load_recipe(["market1501", "ablations/bpbreid"]).data.preset == "five_v"
    assert load_recipe("bpbreid_occluded_duke") == load_recipe(
        ["occluded_duke", "ablations/bpbreid"], ["train.name=occluded_duke-bpbreid"]
    )
    (tmp_path / "a.yaml").write_text("model:\n  dpu: false\n")
    (tmp_path / "b.yaml").write_text("model:\n  ppe: false\n  dpu: true\n")
    (tmp_path / "c.yaml").write_text("base: [a.yaml, b.yaml]\ntrain:\n  epochs: 3\n")
    c = load_recipe(tmp_path / "c.yaml")
    assert (c.model.dpu, c.model.ppe, c.train.epochs) == (True, False, 3), "bases merge in order, the file last"


def test_a_drop_0_1_checkpoint_recipe_keeps_its_behaviour():
    """A recipe stored before the schema had a version: the keys added since get drop 0.1's behaviour."""
    import torch

    from .conftest import DATA

    stored = torch.load(DATA / "checkpoint-0.1.pt", weights_only=True)["recipe"]
    assert "version" not in stored
    r = recipe_from_dict(stored)
    assert r.version == SCHEMA_VERSION
    assert (r.model.reduction, r.model.foreground_pooling, r.model.parsing_init, r.model.align_corners) == (
        "shared",
        "weighted",
        "kaiming",
        False,
    )
    assert (r.loss.triplet_weight, r.loss.pct_weight, r.loss.memory_positives, r.loss.triplet_visibility) == (
        0.0,
        1.0,
        True,
        True,
    ), "0.1's PCT replaced the part triplet and mined memory positives"
    assert (r.data.flip_swap_sides, r.data.erasing, r.data.antialias, r.data.skip_flagged, r.eval.part_embeddings) == (
        True,
        "zhong",
        True,
        False,
        "bnneck",
    )
    assert recipe_from_dict(r.to_dict()) == r, "a current recipe is read as it is"
    with pytest.raises(RecipeError, match="schema version 9"):
        recipe_from_dict({**r.to_dict(), "version": 9})


def test_file_base_and_overrides_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  dpu: false\n  embed_dim: 256\noptim:\n  lr: 3.5e-4\n")
    (tmp_path / "r.yaml").write_text("base: base.yaml\nmodel:\n  embed_dim: 128\ntrain:\n  epochs: 5\n")
    r = load_recipe(tmp_path / "r.yaml", ["train.epochs=7", "optim.lr=1e-3", "data.labels=null"])
    assert (r.model.dpu, r.model.embed_dim, r.train.epochs, r.optim.lr, r.data.labels) == (False, 128, 7, 1e-3, None)
    assert isinstance(r.optim.lr, float)


def test_yaml_round_trip(tmp_path):
    r = load_recipe(None, ["model.pooling=max", "optim.milestones=[3, 4]"])
    (tmp_path / "resolved.yaml").write_text(r.to_yaml())
    assert load_recipe(tmp_path / "resolved.yaml") == r


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=1", "unknown recipe key 'optim.lrr'. Did you mean optim.lr?"),
        ("lr=1", "unknown recipe key 'lr'. Did you mean optim.lr?"),
        ("modle.dpu=true", "unknown recipe key 'modle'. Did you mean model?"),
        ("model.pooling=mean", "recipe key model.pooling must be 'avg' | 'max' | 'avg+max', got 'mean'."),
        ("train.epochs=1.5", "recipe key train.epochs must be int, got 1.5."),
        ("model.dpu=maybe", "recipe key model.dpu must be bool, got 'maybe'."),
        ("optim.milestones=[1, x]", "recipe key optim.milestones must be int, got 'x'."),
        ("train", "override 'train' is not key=value. Example: --set optim.lr=1e-4"),
        ("data=3", "recipe section data must be a mapping, got 3."),
    ],
)
def test_bad_overrides_are_one_clear_error(override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe(None, [override])
    assert str(e.value) == message


def test_dpu_without_decoupling_is_refused_when_the_recipe_loads():
    with pytest.raises(RecipeError, match="model.dpu: true needs model.decouple: true"):
        load_recipe(None, ["model.decouple=false"])
    assert load_recipe(None, ["model.decouple=false", "model.dpu=false"]).model.dpu is False


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model:\n  dpu: [\n")
    with pytest.raises(RecipeError, match=r"not valid YAML \(line 3"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: c.yaml\n")
    with pytest.raises(RecipeError, match="only one level"):
        load_recipe(tmp_path / "a.yaml")


def test_override_parsing_and_differences():
    assert parse_override("optim.lr=1e-4") == {"optim": {"lr": "1e-4"}}
    assert load_recipe(None, ["optim.lr=1e-4"]).optim.lr == 1e-4
    a, b = Recipe().to_dict(), load_recipe(None, ["model.dpu=false", "train.seed=3"]).to_dict()
    assert recipe_differences(a, b) == ["model.dpu", "train.seed"]


def test_shipped_recipes_by_name_and_all_of_them_resolve():
    from drop_cli.recipe import RECIPES_DIR

    assert load_recipe("synthetic") == load_recipe(RECIPES_DIR / "synthetic.yaml")
    assert load_recipe("ablations/no_dpu").model.dpu is False  # a diff on the defaults
    baseline = load_recipe("bpbreid_occluded_duke")
    assert (
        baseline.model.decouple,
        baseline.model.dpu,
        baseline.model.ppe,
        baseline.model.pooling,
        baseline.loss.pct,
        baseline.loss.memory,
        baseline.loss.parsing_smoothing,
    ) == (False, False, False, "avg", False, False, 1)
    for path in RECIPES_DIR.rglob("*.yaml"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="Pass a YAML file or a shipped recipe: .*occluded_duke"):
        load_recipe("occluded_dukes")
