"""The package's dependency rules, checked from the imports (docs/architecture.md).

Every `import` statement counts, the lazy ones inside functions too: a lazy import is still a
dependency, it only moves the cost.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scaleout"
HEAVY = ("optuna", "mlflow", "pandas", "torch", "ray", "matplotlib", "mmengine", "sqlalchemy")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def _violations(sub: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _modules(sub):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return sorted(set(bad))


ABOVE_CORE = tuple(
    f"scaleout.{p.name}" for p in PACKAGE.iterdir() if p.is_dir() and p.name not in ("core",)
)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("core", HEAVY + ABOVE_CORE),
        ("executors", ("scaleout.trainers", "scaleout.sweep", "scaleout.results", "scaleout.cli")),
        ("trainers", ("scaleout.executors", "scaleout.sweep", "scaleout.results", "scaleout.cli")),
        ("results", ("scaleout.sweep.controller", "scaleout.sweep.session", "scaleout.cli")),
        ("sweep", ("scaleout.results", "scaleout.cli")),
    ],
)
def test_layer_imports_only_what_lies_below_it(layer, forbidden):
    assert _violations(layer, forbidden) == []


def test_the_rules_see_every_layer():
    # A rule over an empty folder would pass for nothing.
    for layer in ("core", "executors", "trainers", "results", "sweep", "cli"):
        assert _modules(layer), layer
