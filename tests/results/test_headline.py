"""The headline (the reference recipe's drop at the target, the share recovered, the cost in
labelled units) and everything that shows it: `scaleout leaderboard` (table at 80 columns,
CSV, JSON with the sweep's metadata), the MLflow parent run's metrics and the saved view.
Against the sweep made by hand (tests/results/conftest.py): milliseconds, no training."""

from __future__ import annotations

import copy
import csv
import io
import json
from types import SimpleNamespace

import pytest
from rich.console import Console

from scaleout.cli import main
from scaleout.results.headline import Cost, headline, plan_digest
from scaleout.results.leaderboard import leaderboard_rows, rich_table, select
from scaleout.sweep.tracking import leaderboard_columns, leaderboard_view, parent_run_metrics
from scaleout.sweep.workspace import SweepStore, TrialRecord

# The hand-made sweep: the reference seed 0.30 at 160 GPUs against 0.384 at 8, the best 0.35;
# two full trials, a pruned one at epoch 2, a failed one at 1 and a running one at 1 of 24.
TEXT = (
    "reference recipe at 160 GPUs: NDS 0.300 (-22% vs 0.384 at 8 GPUs); best: 0.350 (t001), "
    "60% of the drop recovered; cost 2.2 trial-equivalents (0.07 GPU-hours at 160 GPUs, "
    "estimated; 2.12 CPU-hours here)"
)


@pytest.fixture
def store(saved_sweep):
    return SweepStore.open("hand", saved_sweep().parent)


@pytest.fixture
def cli(capsys):
    def run(*args: str) -> SimpleNamespace:
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_the_headline_of_a_sweep(store):
    h = headline(store.plan, store.records())
    assert h.text() == TEXT
    assert h.recovered_share == pytest.approx((0.35 - 0.30) / (0.384 - 0.30))
    assert h.drop_share == pytest.approx(0.30 / 0.384 - 1)
    d = h.to_dict()
    assert (d["reference_NDS"], d["reference_seed_NDS"], d["best_NDS"]) == (0.384, 0.30, 0.35)
    assert d["best_trial"] == "t001" and d["reference_seed_trial"] == "t000"
    assert d["reference_source"].endswith("small.py: reference.metric.NDS")
    assert d["target_gpu_hours_basis"] == "estimated" and d["compute_unit_here"] == "CPU-hours"
    assert d["trial_equivalents"] == pytest.approx(2 + 4 / 24)
    words = " ".join(h.sentences())
    assert "scores NDS 0.384 at 8 GPUs" in words and "22% worse" in words
    assert "wins back 60% of that drop" in words and "2.2 trial-equivalents" in words


def _records(*specs: tuple[int, str, str, float | None]) -> list[TrialRecord]:
    return [
        TrialRecord(n, state, origin, value, {}, {"epochs": 24.0}, 1, {}, None, None, {})
        for n, state, origin, value in specs
    ]


def _plan(store, **changes):
    plan = copy.deepcopy(store.plan)
    for path, value in changes.items():
        *head, last = path.split("__")
        d = plan
        for key in head:
            d = d[key]
        d[last] = value
    return plan


def test_the_headline_says_what_it_does_not_know(store):
    seed_and_best = _records((0, "COMPLETE", "reference", 0.30), (1, "COMPLETE", "sampled", 0.35))
    # The reference's own score not stated: the drop cannot be measured, no share.
    h = headline(_plan(store, reference__metric={}), seed_and_best)
    assert h.recovered_share is None
    assert h.text().startswith(
        "reference recipe at 160 GPUs: NDS 0.300 (its score at 8 GPUs is not known); "
        "best: 0.350 (t001), +0.050 over the reference recipe; cost 2.0 trial-equivalents"
    )
    assert "reference.metric.NDS" in " ".join(h.sentences())
    # The reference seed not completed: the best against the reference level only.
    h = headline(store.plan, _records((1, "COMPLETE", "sampled", 0.35)))
    assert h.recovered_share is None
    assert "NDS - (its seed trial has not completed; it scores 0.384 at 8 GPUs)" in h.text()
    assert "best: 0.350 (t001) = 91% of the 0.384 at 8 GPUs" in h.text()
    # No drop at this scale: nothing to recover, and it says so.
    h = headline(
        store.plan,
        _records((0, "COMPLETE", "reference", 0.40), (1, "COMPLETE", "sampled", 0.41)),
    )
    assert h.recovered_share is None and "+4% vs 0.384 at 8 GPUs: no drop to recover" in h.text()
    # No cost basis: the GPU-hours at the target are not known, and it says why.
    h = headline(_plan(store, cost__gpu_hours_per_trial=None), [], cost=Cost(1.0))
    assert h.cost_text() == (
        "1.0 trial-equivalents (GPU-hours at 160 GPUs not known: the plan has no cost basis)"
    )


def test_real_gpus_measure_the_gpu_hours():
    from scaleout.results.headline import TrialCost

    c = Cost.of([TrialCost(1.0, 355.2, "measured", 355.2, "GPU-hours")])
    h = headline(
        {"objective": {"metric": "NDS", "direction": "maximize"}, "target": {"gpus": 160}},
        [],
        cost=c,
    )
    assert h.cost_text() == (
        "1.0 trial-equivalents (355.20 GPU-hours at 160 GPUs, measured; 355.20 GPU-hours here)"
    )


def test_leaderboard_json_carries_the_metadata_and_the_headline(store, cli):
    r = cli("leaderboard", "hand", "--workspace", str(store.sweep.root), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["sweep"], doc["objective"], doc["direction"]) == ("hand", "NDS", "maximize")
    assert doc["plan_digest"] == plan_digest(store.plan) and len(doc["plan_digest"]) == 16
    assert doc["reference"]["metric"] == {"NDS": 0.384, "mAP": 0.45}
    assert doc["reference"]["metric_sources"]["NDS"].endswith("reference.metric.NDS")
    h = doc["headline"]
    assert h["text"] == TEXT
    assert h["recovered_share"] == pytest.approx(0.05 / 0.084) and h["best_NDS"] == 0.35
    assert h["target_gpu_hours_basis"] == "estimated"
    best = doc["trials"][0]
    assert (best["trial"], best["number"], best["rank"]) == ("t001", 1, 1)
    assert best["pct_of_reference"] == pytest.approx(100 * 0.35 / 0.384)
    assert best["target_gpu_hours"] == pytest.approx(0.032)
    assert best["compute_unit_here"] == "CPU-hours" and best["trial_equivalents"] == 1.0


def test_trial_ids_read_the_same_in_table_csv_and_json(store, cli):
    ws = str(store.sweep.root)
    as_json = [
        t["trial"]
        for t in json.loads(
            cli("leaderboard", "hand", "--workspace", ws, "--format", "json").stdout
        )["trials"]
    ]
    as_csv = [
        row["trial"]
        for row in csv.DictReader(
            io.StringIO(cli("leaderboard", "hand", "--workspace", ws, "--format", "csv").stdout)
        )
    ]
    table = cli("leaderboard", "hand", "--workspace", ws).stdout
    assert as_json == as_csv == ["t001", "t000", "t002", "t004", "t003"]
    assert [t for t in as_json if t in table] == as_json


def test_leaderboard_state_and_sort(store, cli):
    ws = str(store.sweep.root)

    def trials(*flags: str) -> list[str]:
        r = cli("leaderboard", "hand", "--workspace", ws, "--format", "json", *flags)
        assert r.returncode == 0, r.stderr
        return [t["trial"] for t in json.loads(r.stdout)["trials"]]

    assert trials("--state", "complete") == ["t001", "t000"]
    assert trials("--state", "pruned") == ["t002"]
    assert trials("--sort", "lr") == ["t000", "t001", "t004", "t002", "t003"]
    # by the objective, each trial at its latest value: running t004 is at 0.20, pruned t002 0.12
    assert trials("--sort", "NDS") == ["t001", "t000", "t004", "t002", "t003"]
    cheapest_first = trials("--sort", "trial_equivalents")
    assert set(cheapest_first[-2:]) == {"t000", "t001"}  # the full trials last, ties by rank
    assert trials("--sort", "trial", "--state", "all")[0] == "t000"
    r = cli("leaderboard", "hand", "--workspace", ws, "--sort", "nope")
    assert r.returncode == 2 and "--sort 'nope'" in r.stderr and "pct_of_reference" in r.stderr


def _rows(store):
    return leaderboard_rows(store.records(), "NDS", "maximize", knobs=store.knobs, plan=store.plan)


@pytest.mark.parametrize("width", [80, 60, 200])
def test_the_table_keeps_its_key_columns_readable_at_any_width(store, width):
    console = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(rich_table(_rows(store), "NDS", knobs=store.knobs, width=console.width))
    out = console.file.getvalue()
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= width
    header = next(line for line in out.splitlines() if "trial" in line)
    for title in ("#", "trial", "state", "NDS", "lr", "warmup"):
        assert title in header, (title, out)
    for value in ("0.3500", "9.00e-03", "t001", "COMPLETE", "PRUNED"):
        assert value in out, (value, out)
    if width < 120:
        assert "more column(s) at a wider terminal" in out
    else:
        assert "CPU-h here" in header and "GPU-h@160 est." in header and "% of ref" in header


def test_select_refuses_an_unknown_state(store):
    from scaleout.core.errors import UsageError

    with pytest.raises(UsageError, match="--state 'done'"):
        select(_rows(store), state="done")


def test_the_parent_run_metrics_are_named_and_labelled(store):
    m = parent_run_metrics(headline(store.plan, store.records()).to_dict())
    assert m["reference_NDS"] == 0.384 and m["best_NDS"] == 0.35
    assert m["recovered_share"] == pytest.approx(0.05 / 0.084, rel=1e-3)  # to 4 digits
    assert m["target_gpu_hours_est"] == pytest.approx(0.032 * (2 + 4 / 24), rel=1e-3)
    assert m["cpu_hours_here"] == pytest.approx(2.125)
    assert "gpu_hours" not in m and "target_gpu_hours" not in m


def test_the_mlflow_view_orders_its_columns_by_what_users_rank_on():
    cols = leaderboard_columns("NDS", "target_gpu_hours_est")
    assert cols == [
        "metrics.`NDS`",
        "metrics.`pct_of_reference`",
        "params.`lr`",
        "params.`warmup_iters`",
        "params.`min_lr_ratio`",
        "metrics.`target_gpu_hours_est`",
        "params.`origin`",
        "tags.`state`",
    ]
    view = json.loads(leaderboard_view("NDS", "target_gpu_hours_est"))
    assert view["selectedColumns"] == view["columnOrder"][2:] == cols
    assert set(view["columnWidths"]) == set(view["columnOrder"])
    # Before the sweep says which cost it logs, each (MLflow draws the ones runs have).
    assert "metrics.`trial_equivalents`" in leaderboard_columns()


@pytest.mark.slow
def test_a_real_sweep_ends_with_its_headline_everywhere(headline_sweep, cli):
    """End to end on the tiny preset: the summary line, the leaderboard's named fields, the
    MLflow parent run's metrics and the trial runs' labelled cost agree."""
    import re

    from mlflow.tracking import MlflowClient

    ws, name, stdout = headline_sweep
    said = " ".join(stdout.split())  # the console wraps long lines
    pattern = (
        r"reference recipe at 16 GPUs: NDS (\d\.\d{3}) \([+-]\d+% vs 0\.500 at 8 GPUs\); "
        r"best: (\d\.\d{3}) \(t00\d\), -?\d+% of the drop recovered; cost 3\.0 "
        r"trial-equivalents \(\S+ GPU-hours at 16 GPUs, estimated; \S+ CPU-hours here\)"
    )
    m = re.search(pattern, said)
    assert m, said
    r = cli("leaderboard", name, "--workspace", str(ws), "--format", "json")
    doc = json.loads(r.stdout)
    h = doc["headline"]
    assert h["text"] in said
    assert f"{h['reference_seed_NDS']:.3f}" == m.group(1) and f"{h['best_NDS']:.3f}" == m.group(2)
    assert h["reference_NDS"] == 0.5 and h["reference_source"].endswith("reference.metric.NDS")
    assert h["trial_equivalents"] == pytest.approx(3.0)
    # Estimated from the plan's cost basis: 0.003 GPU-s a sample x 160 samples x 3 epochs.
    assert h["target_gpu_hours"] == pytest.approx(3 * 0.003 * 160 * 3 / 3600)
    assert h["target_gpu_hours_basis"] == "estimated" and h["compute_unit_here"] == "CPU-hours"
    assert h["recovered_share"] is not None and doc["plan_digest"]
    store = SweepStore.open(name, ws)
    client = MlflowClient(store.mlflow_uri())
    parent = client.get_run(store.study_attrs()["mlflow_parent_run_id"]).data
    for key in ("reference_NDS", "best_NDS", "recovered_share", "trial_equivalents"):
        assert parent.metrics[key] == pytest.approx(h[key], rel=1e-3), key
    assert parent.metrics["target_gpu_hours_est"] == pytest.approx(h["target_gpu_hours"], rel=1e-3)
    assert parent.metrics["cpu_hours_here"] == pytest.approx(h["compute_hours_here"], rel=1e-3)
    assert "gpu_hours" not in parent.metrics
    exp = client.get_experiment_by_name(name)
    trials = client.search_runs([exp.experiment_id], "tags.`scaleout.kind` = 'trial'")
    for run in trials:
        got = run.data.metrics
        assert {"pct_of_reference", "trial_equivalents", "target_gpu_hours_est"} <= set(got)
        assert "cpu_hours_here" in got and "gpu_hours" not in got


def _live_controller():
    """What the live view reads of a controller: its plan (the golden plan's reference, 24
    epochs at 160 GPUs, 0.032 GPU-hours a trial), the stored trials, the running ones."""
    from pathlib import Path

    from scaleout.core.job import Layout, TrialMetrics
    from scaleout.core.plan import make_plan
    from scaleout.core.rules import Reference
    from scaleout.core.space import parse_space
    from scaleout.sweep.budget import Meter, Pricing
    from scaleout.sweep.search import Attr, TrialState, TrialView
    from scaleout.sweep.trial import Active

    ref = Reference(8, 1, 2e-3, 100, 1 / 3, 1e-3, 24, 1600, sample_time_s=0.003)
    ref = type(ref)(**{**ref.__dict__, "metric": {"NDS": 0.384}})
    plan = make_plan(parse_space({"budget": {"trials": 10}}), ref, 160)
    pricing = Pricing.for_run(plan, Layout(1, 1, 160, use_gpu=False))
    done = {"epochs": 24.0, "gpu_hours": 0.032, "gpu_hours_basis": "estimated",
            "compute_hours_here": 0.05, "compute_unit_here": "CPU-hours",
            "trial_equivalents": 1.0}  # fmt: skip
    views = [
        TrialView(0, TrialState.COMPLETE, {}, {Attr.ORIGIN: "reference", Attr.RESULT: done}, 0.22),
        TrialView(
            1,
            TrialState.COMPLETE,
            {},
            {Attr.ORIGIN: "sampled", Attr.RESULT: done, Attr.PARAMS: {"lr": 1.2e-2}},
            0.352,
        ),
        TrialView(2, TrialState.RUNNING, {}, {Attr.ORIGIN: "sampled"}),
    ]
    act = Active(2, "sampled", {"lr": 1e-2, "warmup_iters": 24, "min_lr_ratio": 1e-4},
                 Path("/w"), 1, "r", None, 0.0, pricing=pricing)  # fmt: skip
    act.metrics = TrialMetrics(epochs={e: {"NDS": 0.1} for e in range(1, 13)})
    act.meter = Meter(started=0.0, own_start=True)
    return SimpleNamespace(
        plan=plan,
        searcher=SimpleNamespace(trials=lambda states=None: views),
        active={2: act},
        clock=SimpleNamespace(now=lambda: 1800.0),
        pricing=pricing,
        budget=SimpleNamespace(trials=10),
    )


def test_the_live_view_says_the_best_against_the_reference_and_the_cost_so_far():
    from scaleout.cli.progress import ProgressView, best_line, cost_line, live_headline, totals

    c = _live_controller()
    h = live_headline(c)
    best = totals(c)["best"]
    assert best_line(h, best) == (
        "best NDS 0.352 (t001, lr 1.20e-02) = 92% of the 8-GPU 0.384, 80% of the drop recovered"
    )
    # Two full trials and half of the running one: 2.5 trial-equivalents, at the plan's
    # 0.032 GPU-hours a trial; 0.05 CPU-hours each finished one and 0.5 h of one process.
    assert (
        cost_line(h)
        == "cost so far: 2.5 trial-eq | 0.08 GPU-h at 160 GPUs (est.) | 0.60 CPU-h here"
    )
    console = Console(width=80, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(ProgressView(c, console).render())
    out = console.file.getvalue()
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    for text in ("t002", "1.00e-02", "24", "12/24", "0.1000"):
        assert text in out, (text, out)
    assert "80% of the drop recovered" in " ".join(out.split())  # the line wraps at 80
