"""Recipes: typed fields, strict keys with suggestions, base files and --set overrides."""
from __future__ import annotations

import pytest

from drop_cli.recipe import Recipe, RecipeError, load_recipe, parse_override, recipe_differences


def test_defaults_follow_the_paper():
    r = load_recipe()
    assert (r.optim.lr, r.optim.weight_decay, r.optim.milestones, r.train.batch_size) == (3.5e-4, 5e-4, [40, 70], 64)
    assert (r.model.backbone, r.model.decouple, r.model.pooling, r.loss.parsing_weight) == ("hrnet_w32", True,
                                                                                              "avg+max", 0.35)


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


@pytest.mark.parametrize("override,message", [
    ("optim.lrr=1", "unknown recipe key 'optim.lrr'. Did you mean optim.lr?"),
    ("lr=1", "unknown recipe key 'lr'. Did you mean optim.lr?"),
    ("modle.dpu=true", "unknown recipe key 'modle'. Did you mean model?"),
    ("model.pooling=mean", "recipe key model.pooling must be 'avg' | 'max' | 'avg+max', got 'mean'."),
    ("train.epochs=1.5", "recipe key train.epochs must be int, got 1.5."),
    ("model.dpu=maybe", "recipe key model.dpu must be bool, got 'maybe'."),
    ("optim.milestones=[1, x]", "recipe key optim.milestones must be int, got 'x'."),
    ("train", "override 'train' is not key=value. Example: --set optim.lr=1e-4"),
    ("data=3", "recipe section data must be a mapping, got 3."),
])
def test_bad_overrides_are_one_clear_error(override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe(None, [override])
    assert str(e.value) == message


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
    assert load_recipe("ablations/no_dpu").model.dpu is False
    baseline = load_recipe("bpbreid_occluded_duke")
    assert (baseline.model.decouple, baseline.model.dpu, baseline.model.ppe, baseline.model.pooling,
            baseline.loss.pct, baseline.loss.memory, baseline.loss.parsing_smoothing) == (False, False, False, "avg",
                                                                                          False, False, 1)
    for path in RECIPES_DIR.rglob("*.yaml"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="Pass a YAML file or a shipped recipe: .*occluded_duke"):
        load_recipe("occluded_dukes")
