"""The package's layering, checked on the source: imports only point down, no circles, no internal imports
hidden in functions, and the command line starts without torch."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "drop_cli"
# Lowest first. A module may import from its own layer and the layers below, never from one above.
LAYERS = [
    # leaves: no drop_cli imports but these
    {"_version", "_distributed", "_files", "_h5", "_partial", "_ui", "_workers", "errors", "parts", "recipe"},
    {"data", "labels", "model", "losses", "synthetic"},  # components
    {"train", "features", "evaluation", "viz"},  # pipeline stages
    {"inference", "tracking", "index"},  # a trained model on new images (model API, ONNX export, BoxMOT, search index)
    {"api"},  # the verbs, as Python functions
    {"projects"},  # studies on top of the verbs
    {"cli", "__main__"},  # the command line
]
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def internal_imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported drop_cli module, line, inside a function) for every import of ``name``'s source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    functions = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else node.module
            if target and target.split(".")[0] == "drop_cli":
                names = [f"{target}.{a.name}" for a in node.names] if not node.module or node.level else [target]
                out += [(t, node.lineno, id(node) in functions) for t in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in functions) for a in node.names if a.name.startswith("drop_cli")]
    return out


def unit(module: str) -> str:
    """The layer unit of a module: drop_cli.<unit>[.rest]."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def resolved(target: str, known: dict[str, Path]) -> str:
    """``drop_cli.x.name`` -> the module it names (``drop_cli.x`` when ``name`` is an attribute)."""
    return target if target in known else target.rpartition(".")[0]


def test_every_module_has_a_layer():
    assert {unit(m) for m in modules()} - {"__init__"} <= set(LAYER)


def test_no_internal_import_inside_a_function():
    hidden = [
        f"{m}:{line} imports {t}" for m, p in modules().items() for t, line, inside in internal_imports(m, p) if inside
    ]
    assert not hidden, "hoist these to the top of their module (one that cannot be hoisted is a circle):\n" + "\n".join(
        hidden
    )


def test_imports_only_point_down():
    known = modules()
    upward = []
    for module, path in known.items():
        if module == "drop_cli":
            continue  # the package's own __init__ re-exports the api (lazily)
        for target, line, _ in internal_imports(module, path):
            here, there = unit(module), unit(resolved(target, known))
            if there != "__init__" and LAYER[there] > LAYER[here]:
                upward.append(f"{module}:{line} ({here}) imports {target} ({there})")
            if there == "__init__" and here != "__init__":
                upward.append(f"{module}:{line} imports the package itself")
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    known = modules()
    graph = {
        m: {resolved(t, known) for t, _, inside in internal_imports(m, p) if not inside} - {m} for m, p in known.items()
    }
    # a package imports its submodules; a submodule importing its own package is not a circle by itself
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in itertools.pairwise(cycle)):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["train", "--help"]])
def test_the_command_line_starts_without_torch(args):
    code = (
        "import sys; from drop_cli.cli import app\n"
        f"try:\n    app({args!r}, prog_name='drop')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'timm', 'cv2', 'h5py') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_lazy_exports_are_complete():
    import drop_cli
    from drop_cli import api

    assert sorted(api.__all__) == sorted(api._EXPORTS)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    for name in drop_cli.__all__:
        assert getattr(drop_cli, name) is not None, name


def test_api_functions_are_keyword_only_after_their_first_argument():
    loose = []
    for module, path in modules().items():
        if unit(module) != "api":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args]
                if len(positional) > 1:
                    loose.append(f"{module}.{node.name}({', '.join(positional)}, ...)")
    assert not loose, "make these keyword-only after the first argument:\n" + "\n".join(loose)
