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
        # evidence (probe, fit) sits on trainers, executors, sweep and results, below the CLI
        ("evidence", ("scaleout.cli",)),
    ],
)
def test_layer_imports_only_what_lies_below_it(layer, forbidden):
    assert _violations(layer, forbidden) == []


def test_nothing_below_evidence_imports_it():
    for layer in ("core", "executors", "trainers", "results", "sweep", "minibev"):
        assert _violations(layer, ("scaleout.evidence",)) == [], layer


# What a trainer's own process has: scaleout.hooks run there (docs/evidence.md).
TRAINER_PROCESS = ("__future__", "collections", "torch", "mmcv", "mmengine", "scaleout.hooks")


def test_the_trainer_hooks_import_only_what_the_trainer_has():
    mods = _modules("hooks")
    assert {p.name for p in mods} >= {"__init__.py", "grad_noise.py", "mmcv_grad_stats.py"}
    bad = [
        f"{p.name} imports {name}"
        for p in mods
        for name in _imports(p)
        if not any(name == f or name.startswith(f + ".") for f in TRAINER_PROCESS)
    ]
    assert bad == []
    # The package's own __init__ files run first in the trainer's process: they import nothing.
    assert _imports(PACKAGE / "__init__.py") == set()
    assert _imports(PACKAGE / "hooks" / "__init__.py") == set()


def test_the_rules_see_every_layer():
    # A rule over an empty folder would pass for nothing.
    for layer in ("core", "executors", "trainers", "results", "sweep", "cli", "evidence", "hooks"):
        assert _modules(layer), layer


def _module_violations(module: str, forbidden: tuple[str, ...]) -> list[str]:
    path = PACKAGE / (module.replace(".", "/") + ".py")
    return sorted(
        f"{module} imports {name}"
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def test_the_read_model_imports_nothing_built_on_it():
    # frame.py is what the leaderboard, plots, report and publish read from: importing any of
    # them back would make the circle the package was split to break.
    above = tuple(f"scaleout.results.{m}" for m in ("plots", "report", "publish", "leaderboard"))
    assert (PACKAGE / "results" / "frame.py").is_file()
    assert _module_violations("results.frame", above) == []
    assert _module_violations("results.queries", above[:3]) == []


# What writes a store: MLflow's client and Optuna's study/trial methods that change them
# (`add_trial` is left out: the importance plot fills an in-memory study of its own).
STORE_WRITES = frozenset(
    {
        "log_artifact",
        "log_artifacts",
        "log_batch",
        "log_metric",
        "log_param",
        "set_tag",
        "set_experiment_tag",
        "set_terminated",
        "create_run",
        "set_user_attr",
        "set_system_attr",
        "tell",
        "enqueue_trial",
    }
)


def _store_writes(path: Path) -> set[str]:
    return {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in STORE_WRITES
    }


def test_publish_is_the_one_writer_in_results():
    writes = {p.name: _store_writes(p) for p in _modules("results")}
    assert writes.pop("publish.py"), "publish.py writes nothing: the rule checks nothing"
    assert {name: w for name, w in writes.items() if w} == {}
