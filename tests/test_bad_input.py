"""Every bad value is one clear line: generated from the recipe schema and from the command line itself,
so a new recipe key or option is covered without editing this file.

Each case runs ``drop`` in-process (``drop_cli.cli.main``) and asserts a non-zero exit, exactly one line
on stderr that starts with ``error:``, no traceback, and with ``--json`` one JSON error object on stdout.
No case gets as far as doing work: values are checked before anything starts.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import pytest
import typer

from drop_cli.cli import app, main
from drop_cli.recipe import Range, recipe_keys

from .conftest import TINY, tiny_recipe


def bad_values(tp) -> list[str]:
    """``--set`` values (YAML text) that a key of type ``tp`` must refuse."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        valid = next(m for m in meta if isinstance(m, Range))
        values = bad_values(base)
        if valid.low is not None:
            values.append(str(valid.low if valid.low_open else valid.low - 1))
        if valid.high is not None:
            values.append(str(valid.high if valid.high_open else valid.high + 1))
        if valid.odd:
            values.append(str((valid.low or 0) + 1 if (valid.low or 0) % 2 else valid.low or 0))
        return values
    if origin is typing.Literal:
        return ["not-a-choice"]
    if origin is list:
        return ["not-a-list", "[not-a-number]"]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return bad_values(options[0]) if len(options) == 1 and options[0] is not str else ["[1, 2]"]
    if tp is bool:
        return ["maybe", "2"]
    if tp is int:
        return ["abc", "1.5"]
    if tp is float:
        return ["abc", ".nan", ".inf"]
    if tp is str:
        return ["[1, 2]"]
    raise AssertionError(f"no bad values for {tp}: teach bad_values this type")


RECIPE_CASES = [(k.key, value) for k in recipe_keys() for value in bad_values(k.type)]


def parameters(command=None, path=()):
    """(command path, long option or None for an argument, types of its value, the parameter) for every
    parameter of every command of the command line."""
    command = command or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        yield from parameters(sub, (*path, name))
    for param in getattr(command, "params", []):
        annotation = param.type_descriptor.annotation
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        yield " ".join(path), next((o for o in param.opts if o.startswith("--")), None), kinds, param


def numeric_options() -> list[tuple[str, str, list[str]]]:
    """(command path, option, bad values) for every int/float option of every command."""
    out = []
    for command, option, kinds, param in parameters():
        if option is None or kinds[0] not in (int, float):
            continue
        values = ["abc"]
        if param.min is not None:
            values.append(str(param.min - 1))
        if param.max is not None:
            values.append(str(param.max + 1))
        out.append((command, option, values))
    return out


OPTION_CASES = [(cmd, opt, value) for cmd, opt, values in numeric_options() for value in values]


def path_params() -> list[tuple[str, str | None, str, bool, bool]]:
    """(command path, option or None for an argument, "file" | "folder" | "any", is an output, is required) for
    every path parameter of every command, as the command line marks it (``drop_cli.cli._path``)."""
    out = []
    for command, option, kinds, param in parameters():
        if Path not in kinds:
            continue
        info = param.type_descriptor.parameter_info
        assert (info.metavar or "").rstrip(".") in {"FILE", "FOLDER", "PATH"}, f"{command} {param.opts}: use _path"
        kind = "any" if info.file_okay and info.dir_okay else "file" if info.file_okay else "folder"
        out.append((command, option, kind, info.writable, param.required))
    return out


PATHS = path_params()


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, out: str, err: str, json_out: bool) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err + out
    if json_out:
        payload = json.loads(out.strip().splitlines()[-1])
        assert payload["error"] and set(payload) == {"error", "hint"}


def test_every_numeric_key_and_option_declares_its_range():
    def numeric(tp) -> bool:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return tp in (int, float) or (
            typing.get_origin(tp) in (list, typing.Union, types.UnionType) and any(map(numeric, args))
        )

    unbounded = [k.key for k in recipe_keys() if numeric(k.type)]
    assert not unbounded, f"give these a Range (drop_cli/recipe.py): {unbounded}"
    assert all(len(values) > 1 for _, _, values in numeric_options()), "give every numeric option a min (or max)"


def test_the_tables_are_not_empty():
    assert len(RECIPE_CASES) > 150 and {k for k, _ in RECIPE_CASES} == {k.key for k in recipe_keys()}
    assert {opt for _, opt, _ in OPTION_CASES} >= {"--k1", "--lambda", "--batch-size", "--ids", "--top"}


@pytest.mark.parametrize(("key", "value"), RECIPE_CASES)
def test_a_bad_recipe_value_is_one_line(capsys, tmp_path, key, value):
    argv = ["train", "--recipe", "synthetic", "--set", f"{key}={value}", "--output", str(tmp_path / "run")]
    code, out, err = run(capsys, [*argv, "--json"])
    assert_one_error_line(code, out, err, json_out=True)
    assert key in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("command", "option", "value"), OPTION_CASES)
def test_a_bad_option_value_is_one_line(capsys, tmp_path, command, option, value):
    code, out, err = run(capsys, [*command.split(), option, value])
    assert_one_error_line(code, out, err, json_out=False)
    assert option in err and code == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--featurs", "x.h5"],
        ["evaluate"],
        ["no-such-command"],
        ["recipe", "show", "--recipe", "synthetic", "--set", "train.epoch=2"],
        ["quickstart", "--set", "train.epoch=2"],
        ["ablation-study", "--set", "optim.lr=-1"],
        ["ablation-study", "--seeds", ","],
    ],
)
def test_usage_errors_and_typos_are_one_line(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, [*argv, "--json"])
    assert_one_error_line(code, out, err, json_out=True)
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_an_output_that_is_a_file_or_a_folder_in_the_way_is_one_line(
    capsys, tmp_path, synthetic_labels, synthetic_root
):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    train = ["train", "--recipe", str(TINY), *(f"--set={o}" for o in tiny_recipe(synthetic_root))]
    for argv in (
        [*train, "--output", str(blocker)],
        [*train, "--output", str(blocker / "run")],
        [*train, "--set", f"train.output={blocker}"],
        ["visualize", "labels", "--labels", str(synthetic_labels), "--count", "2", "--out", str(tmp_path)],
    ):
        code, out, err = run(capsys, [*argv, "--json"])
        assert_one_error_line(code, out, err, json_out=True)
        assert str(blocker if "visualize" not in argv else tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_damaged_input_file_is_one_line_naming_it(capsys, tmp_path, monkeypatch):
    """A binary file for a text or HDF5 input, a missing one, a damaged run folder: the line names the
    path (the wrong kinds of path, for every path parameter, are the generated test below)."""
    monkeypatch.chdir(tmp_path)
    binary = tmp_path / "bin ü.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    missing = tmp_path / "missing ü" / "x.h5"
    inputs = {
        ("train", "--recipe"): (binary, missing),
        ("train", "--resume"): (missing,),
        ("extract-features", "--checkpoint"): (binary, missing),
        ("evaluate", "--features"): (binary, missing),
        ("visualize labels", "--labels"): (binary, missing),
        ("visualize ranking", "--features"): (binary, missing),
        ("visualize training", None): (missing, tmp_path),  # tmp_path: a folder without metrics.csv
        ("dataset-info synthetic", "--root"): (missing,),
    }
    for (command, option), paths in inputs.items():
        for path in paths:
            code, out, err = run(capsys, [*command.split(), *([option] if option else []), str(path), "--json"])
            assert_one_error_line(code, out, err, json_out=True)
            assert code == 1 and str(path) in err, (command, option, path, err)
    (tmp_path / "metrics.csv").write_bytes(bytes(range(256)))  # a damaged run folder
    code, out, err = run(capsys, ["visualize", "training", str(tmp_path), "--json"])
    assert_one_error_line(code, out, err, json_out=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([binary.name, "metrics.csv"])


def existing_paths(tmp_path: Path) -> dict[str, Path]:
    """An existing path of each kind, for the required path parameters not under test."""
    existing = {"file": tmp_path / "existing ü.h5", "folder": tmp_path / "existing folder ü"}
    existing["file"].touch()
    existing["folder"].mkdir(exist_ok=True)
    return {**existing, "any": existing["folder"]}


def argv_with(existing: dict[str, Path], command: str, option: str | None, value: Path) -> list[str]:
    """``command`` with ``value`` for one path parameter and, for every other required path parameter, an
    existing path of the right kind (so the parser gets as far as the parameter under test)."""
    argv = command.split()
    for cmd, opt, kind, _, required in PATHS:
        if cmd != command:
            continue
        path = value if opt == option else existing[kind] if required else None
        if path is not None:
            argv += [opt, str(path)] if opt else [str(path)]
    return argv


@pytest.mark.parametrize(("command", "option", "kind", "output", "required"), PATHS)
def test_every_path_parameter_refuses_the_wrong_kind_of_path(capsys, tmp_path, command, option, kind, output, required):
    """Generated from the command line: a folder for a file, a file for a folder, a missing input, a
    binary file for an input file, an output under a file; names with spaces and non-ASCII letters.
    Nothing is written."""
    existing = existing_paths(tmp_path)
    if kind != "any":  # a file or a folder: the other kind is refused by the parser
        wrong = tmp_path / ("a folder ü" if kind == "file" else "a file ü.txt")
        wrong.mkdir() if kind == "file" else wrong.write_text("not a folder")
        code, out, err = run(capsys, [*argv_with(existing, command, option, wrong), "--json"])
        assert_one_error_line(code, out, err, json_out=True)
        assert code == 2 and str(wrong) in err and (option or "") in err, err
    other = tmp_path / "missing ü" / "x.h5" if not output else tmp_path / "a file ü.txt" / "x"
    other.parent.mkdir() if not output else None
    if output and not other.parent.exists():
        other.parent.write_text("in the way")
    binary = tmp_path / "binary ü.h5"
    binary.write_bytes(bytes(range(256)) * 4)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for value in (other, binary) if kind != "folder" and not output else (other,):
        code, out, err = run(capsys, [*argv_with(existing, command, option, value), "--json"])
        assert_one_error_line(code, out, err, json_out=True)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, (value, err)
