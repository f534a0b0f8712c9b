"""Real Slurm and Ray clusters on this one machine, and the sweep helpers their tests share.

Tests reach the helpers through the `helpers` fixture (this module), since test modules are
imported by path. Every daemon runs as a child of the test process (foreground mode), keeps
all its files under one tmp dir, and is stopped by its PID: SIGTERM, a deadline, then SIGKILL
(Ray daemons can ignore SIGTERM for over 10 s). docs/clusters.md says why each setting is what
it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from scaleout.executors.ray_entry import descendants

REPO = Path(__file__).resolve().parents[2]
SPACE = str(REPO / "search_spaces" / "lr_scaling.yaml")
BIN = Path(sys.executable).parent


def free_port_range(count: int) -> int:
    """The first of `count` consecutive TCP ports that are free now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65000:
            continue
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_pids(pids: list[int], deadline_s: float = 10.0) -> None:
    """SIGTERM each, wait up to the deadline, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + deadline_s
    left = list(pids)
    while left and time.monotonic() < end:
        left = [p for p in left if _alive(p)]
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat[stat.rfind(")") + 2] == "Z":  # a zombie child of ours: reap it
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


# -- Slurm --------------------------------------------------------------------------------------
SLURM_CONF = """\
ClusterName=scaleouttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/slurmd.%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
{accounting}
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
NodeName=node[1-{nodes}] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[{d_first}-{d_last}] \
CPUs={cpus} RealMemory=4000 Gres=gpu:{gpus} State=UNKNOWN
PartitionName=gpu Nodes=node[1-{nodes}] Default=YES MaxTime=INFINITE State=UP
PartitionName=onenode Nodes=node[1-{nodes}] MaxNodes=1 MaxTime=INFINITE State=UP
"""


NO_ACCOUNTING = "AccountingStorageType=accounting_storage/none"
ACCOUNTING = """\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
JobAcctGatherType=jobacct_gather/none"""

# slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF (it has no -f flag); it must
# be mode 600 and owned by SlurmUser.
SLURMDBD_CONF = """\
AuthType=auth/none
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={root}/slurmdbd.pid
LogFile={root}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
"""


def _which(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


class MariaDB:
    """A throwaway MariaDB server (Debian mariadb-server) for slurmdbd: its own data dir,
    running as root (--user=root), on a unix socket for the admin and 127.0.0.1:PORT for
    slurmdbd. `root` should be short: the socket path lives under it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket = root / "mysqld.sock"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MariaDB:
        install = _which("mariadb-install-db", "mysql_install_db")
        server = _which("mariadbd", "mysqld")
        assert install and server, "MariaDB is not installed: tests/run.sh installs it"
        # --no-defaults everywhere: nothing from /etc/mysql (its socket, port or data dir)
        subprocess.run(
            [install, "--no-defaults", "--user=root", f"--datadir={self.data}",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        self.port = free_port_range(1)
        log = open(self.root / "mariadbd.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [server, "--no-defaults", "--user=root", f"--datadir={self.data}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", f"--pid-file={self.root / 'mariadbd.pid'}",
             f"--log-error={self.root / 'mariadbd.err'}"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_for(self._up, 30, "MariaDB")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mariadbd exited: see {self.root / 'mariadbd.err'}")
        return self.sql("SELECT 1", check=False).returncode == 0

    def sql(self, statements: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        client = _which("mariadb", "mysql") or "mariadb"
        return subprocess.run(
            [client, "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", statements],
            capture_output=True, text=True, check=check, timeout=30,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            stop_pids([self.proc.pid], deadline_s=20)  # SIGTERM: a clean InnoDB shutdown
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=1)


class SlurmCluster:
    """slurmctld and one slurmd per node (multiple-slurmd build), fake GPUs on /dev/null.

    With `accounting=True` it also starts real Slurm accounting first: a MariaDB server, then
    slurmdbd on it (the cluster registered with sacctmgr), and slurmctld stores every job
    there (AccountingStorageType=accounting_storage/slurmdbd), so `sacct` answers."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 4,
        gpus: int = 8,
        cpus: int = 8,
        accounting: bool = False,
    ) -> None:
        self.root = root
        self.nodes = nodes
        self.gpus = gpus
        self.cpus = cpus
        self.accounting = accounting
        self.conf = root / "slurm.conf"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.db: MariaDB | None = None
        self.dbd: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        root = self.root
        for d in ("state", "spool", "fakegpu"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):
            link = root / "fakegpu" / f"nvidia{i}"
            if not link.exists():
                link.symlink_to("/dev/null")
        ctld = free_port_range(1)
        first = free_port_range(self.nodes)
        dbd_port = free_port_range(1) if self.accounting else 0
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname(),
                ctld_port=ctld,
                root=root,
                nodes=self.nodes,
                d_first=first,
                d_last=first + self.nodes - 1,
                cpus=self.cpus,
                gpus=self.gpus,
                accounting=ACCOUNTING.format(dbd_port=dbd_port)
                if self.accounting
                else NO_ACCOUNTING,
            )
        )
        (root / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName=node[1-{self.nodes}] Name=gpu "
            f"File={root}/fakegpu/nvidia[0-{self.gpus - 1}]\n"
        )
        env = {**os.environ, **self.env}
        log = open(root / "daemons.out", "ab")  # noqa: SIM115 - closed with the cluster
        self._log = log
        if self.accounting:
            self._start_accounting(dbd_port, env)
        self.procs.append(
            subprocess.Popen(
                ["slurmctld", "-D", "-i", "-f", str(self.conf)],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )
        for i in range(1, self.nodes + 1):
            self.procs.append(
                subprocess.Popen(
                    ["slurmd", "-D", "-f", str(self.conf), "-N", f"node{i}"],
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        wait_for(self._all_idle, 30, f"{self.nodes} idle Slurm nodes")
        return self

    def _start_accounting(self, dbd_port: int, env: dict[str, str]) -> None:
        """MariaDB, then slurmdbd on it, then the cluster's row (before slurmctld starts)."""
        # a short dir of its own: the socket path must stay short, and the ~110 MB data dir
        # is removed at stop rather than kept with pytest's last tmp dirs
        self.db = MariaDB(Path(tempfile.mkdtemp(prefix="slurmdb", dir="/tmp"))).start()
        password = os.urandom(8).hex()
        self.db.sql(
            "CREATE DATABASE slurm_acct_db; "
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        dbd_conf = self.root / "slurmdbd.conf"
        dbd_conf.write_text(
            SLURMDBD_CONF.format(
                dbd_port=dbd_port, root=self.root, db_port=self.db.port, password=password
            )
        )
        dbd_conf.chmod(0o600)
        self.dbd = subprocess.Popen(
            ["slurmdbd", "-D"],
            env=env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        wait_for(self._dbd_up, 30, "slurmdbd")
        self.run("sacctmgr", "-i", "add", "cluster", "scaleouttest")

    def _dbd_up(self) -> bool:
        assert self.dbd is not None
        if self.dbd.poll() is not None:
            raise AssertionError(f"slurmdbd exited: see {self.root}/slurmdbd.log and daemons.out")
        return self.run("sacctmgr", "-n", "-P", "list", "cluster", check=False).returncode == 0

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            check=check,
            timeout=30,
        )

    def _all_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        # one line per node and partition: every node is in both test partitions
        states = dict(line.split()[:2] for line in r.stdout.splitlines() if line.strip())
        return len(states) == self.nodes and all(s == "idle" for s in states.values())

    def jobs(self) -> dict[str, str]:
        """Job name -> state for every job slurmctld still remembers."""
        r = self.run("squeue", "-h", "--states=all", "-o", "%j|%T", check=False)
        return dict(line.split("|", 1) for line in r.stdout.splitlines() if "|" in line)

    def stop(self) -> None:
        """Jobs, then slurmctld and the slurmds, then slurmdbd, then MariaDB: every stage
        runs even when an earlier one failed (or start() stopped half-way)."""
        errors = []
        for stage in (self._cancel_jobs, self._stop_slurm, self._stop_accounting):
            try:
                stage()
            except Exception as exc:  # raised below, once every stage has run
                errors.append(exc)
        if self._log is not None:
            self._log.close()
        if errors:
            raise errors[0]

    def _cancel_jobs(self) -> None:
        if not self.procs:
            return
        jobs = self._queued()
        if jobs:
            self.run("scancel", *jobs, check=False)
            # while slurmctld still answers, the slurmds end the steps (KillWait=5): a step
            # whose slurmctld is gone retries its completion message for ever
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not self._queued(), 15, "the cancelled jobs to end")

    def _queued(self) -> list[str]:
        """Ids of the jobs that are pending, running or completing."""
        return self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()

    def _stop_slurm(self) -> None:
        pids = [p.pid for p in self.procs]
        others = [d for p in pids for d in descendants(p)]  # slurmscriptd
        stop_pids(pids + others, deadline_s=10)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        # slurmstepd daemonizes (its parent is init, not slurmd) and ignores SIGTERM: the
        # ones of this cluster, found by their SLURM_CONF, and their jobs' processes
        steps = self._stepds()
        left = steps + [d for s in steps for d in descendants(s)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _stepds(self) -> list[int]:
        mine = f"SLURM_CONF={self.conf}".encode()
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stepd = (d / "comm").read_text().strip() == "slurmstepd"
                if stepd and mine in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                continue
        return out

    def _stop_accounting(self) -> None:
        if self.dbd is not None:
            stop_pids([self.dbd.pid], deadline_s=10)
            with contextlib.suppress(Exception):
                self.dbd.wait(timeout=1)
        if self.db is not None:
            self.db.stop()
            shutil.rmtree(self.db.root, ignore_errors=True)


def have_slurm() -> bool:
    return all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "squeue"))


def have_slurm_accounting() -> bool:
    """slurmdbd and sacct (Debian slurmdbd, slurm-client) and a MariaDB server to store in."""
    return (
        have_slurm()
        and all(shutil.which(c) for c in ("slurmdbd", "sacctmgr", "sacct"))
        and all(
            _which(*names)
            for names in (
                ("mariadbd", "mysqld"),
                ("mariadb-install-db", "mysql_install_db"),
                ("mariadb", "mysql"),
            )
        )
    )


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def helpers() -> ModuleType:
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """4 nodes x 8 fake GPUs; SLURM_CONF is exported for the session's clients."""
    if not have_slurm():
        pytest.skip("Slurm (Debian slurm-wlm) is not installed: tests/run.sh installs it")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    before = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="module")
def slurm_accounting_cluster(tmp_path_factory):
    """A second, separate cluster with real accounting (MariaDB + slurmdbd + slurmctld + 2
    slurmd x 8 fake GPUs), for the module that uses it. It does not export SLURM_CONF (the
    session's `slurm_cluster` owns that): tests set it from `.env` for themselves."""
    if not have_slurm_accounting():
        pytest.skip(
            "Slurm accounting (Debian slurmdbd, mariadb-server) is not installed: "
            "tests/run.sh installs it"
        )
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurmacct"), nodes=2, accounting=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """4 nodes x 8 fake GPUs (a head and 3 workers); RAY_ADDRESS is exported for the session."""
    import tempfile

    pytest.importorskip("ray", reason="Ray is the scaleout[ray] extra: tests/run.sh installs it")
    # a short root: Ray's unix sockets live under it and their paths must stay short
    root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    cluster = RayCluster(root)
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    try:
        cluster.start()
        os.environ.update(RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="disabled")
        yield cluster
    finally:
        cluster.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)


# -- sweeps through the CLI, checked like tests/test_sweep_e2e.py ------------------------------
def sweep_cmd(ws: Path, name: str, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "scaleout", "sweep",
        "--gpus", "16", "--space", SPACE, "--preset", "tiny",
        "--trials", str(trials), "--name", name, "--workspace", str(ws),
        "--poll-interval", "0.3", "--procs-per-node", "1", *extra,
    ]  # fmt: skip


def run_sweep(ws: Path, name: str, trials: int, *extra: str, timeout: float = 240):
    return subprocess.run(
        sweep_cmd(ws, name, trials, *extra), capture_output=True, text=True, timeout=timeout
    )


def study(ws: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{ws / name / 'study.db'}")


def running_jobs(ws: Path, name: str) -> list[dict]:
    import json

    from optuna.trial import TrialState

    try:
        trials = study(ws, name).get_trials()
    except Exception:
        return []
    return [
        json.loads(t.user_attrs["job"])
        for t in trials
        if t.state == TrialState.RUNNING and t.user_attrs.get("job")
    ]


def check_complete(ws: Path, name: str, trials: int) -> None:
    """Every trial finished once, one MLflow run each, each epoch logged once."""
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    states = [t.state for t in study(ws, name).get_trials()]
    assert states.count(TrialState.RUNNING) == 0
    assert len([st for st in states if st.is_finished()]) == trials
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("scaleout.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("scaleout.kind") == "trial"]
    assert len(parents) == 1
    assert sorted(int(r.data.tags["scaleout.trial"]) for r in children) == list(range(trials))
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "NDS")]
        assert steps == sorted(set(steps)), f"duplicated epochs in {r.info.run_name}: {steps}"


def prune_one_trial(executor, tmp: Path):
    """One real minibev trial through the real controller and `executor`, with a pruner that
    prunes at the first report (NDS < 0.5): the controller must cancel the job.
    Returns (the pruned trial, its job handle)."""
    from dataclasses import replace

    import optuna

    from scaleout.core.job import JobHandle
    from scaleout.sweep.controller import Controller
    from scaleout.sweep.search import OptunaSearcher
    from scaleout.sweep.session import build_plan
    from scaleout.sweep.study import create_or_load
    from scaleout.sweep.tracking import NullTracker

    plan, trainer, _ = build_plan(
        SPACE, 16, trainer_flags={"name": "minibev", "preset": "tiny"}, need_trainer=True
    )
    plan = replace(plan, trials=1)
    st = create_or_load(f"sqlite:///{tmp / 'study.db'}", "prune", plan)
    searcher = OptunaSearcher(st, plan)
    searcher.enqueue(plan.seeds[: plan.trials])
    st.pruner = optuna.pruners.ThresholdPruner(lower=0.5)
    controller = Controller(
        searcher=searcher,
        plan=plan,
        trainer=trainer,
        executor=executor,
        tracker=NullTracker(),
        sweep_name="prune",
        sweep_dir=tmp,
        parent_run_id="p",
        parallel=0,
        poll_interval_s=0.3,
    )
    controller.tracker.start_sweep("prune", "u", {}, {})
    assert controller.run() == "budget spent"
    trial = st.get_trials()[0]
    return trial, JobHandle.from_json(trial.user_attrs["job"])


# -- Ray ------------------------------------------------------------------------------------------
def host_ip() -> str:
    """The host's own address for the head node (a head on 127.0.0.1 made drivers hang)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return next((a for a in out if "." in a and not a.startswith("127.")), "127.0.0.1")


class RayCluster:
    """A head and workers as `ray start --block` processes, started one after another;
    workers on distinct loopback addresses (127.0.0.2, ...), so placement by node IP sees
    distinct hosts. Token auth off (RAY_AUTH_MODE=disabled) for every process."""

    def __init__(self, root: Path, *, nodes: int = 4, gpus: int = 8, cpus: int = 4) -> None:
        self.root = root
        self.nodes = nodes
        self.gpus = gpus
        self.cpus = cpus
        self.procs: list[subprocess.Popen[bytes]] = []
        self.head_ip = host_ip()
        self.gcs_port = free_port_range(1)
        self.dashboard_port = free_port_range(1)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(self.root),
            # notice a dead node within seconds, not the default half minute
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_health_check_timeout_ms": "1000",
        }

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"node{len(self.procs)}.out", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", *args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def common(self) -> list[str]:
        return [
            f"--num-gpus={self.gpus}",
            f"--num-cpus={self.cpus}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ]

    def start(self) -> RayCluster:
        self._start(
            "--head",
            f"--node-ip-address={self.head_ip}",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--temp-dir={self.root}",
            *self.common(),
        )
        wait_for(lambda: self.alive_nodes() == 1, 60, "the Ray head and its dashboard")
        for i in range(2, self.nodes + 1):
            self._start(
                f"--address={self.head_ip}:{self.gcs_port}",
                f"--node-ip-address=127.0.0.{i}",
                *self.common(),
            )
            wait_for(lambda i=i: self.alive_nodes() == i, 60, f"Ray node {i}")
        return self

    def alive_nodes(self) -> int:
        try:
            from ray.util.state import list_nodes

            nodes = list_nodes(address=self.address, timeout=5, raise_on_missing_output=False)
        except Exception:
            return 0
        return sum(1 for n in nodes if n.state == "ALIVE")

    def raylet_of(self, node: int) -> int:
        """The raylet PID of node N (1 = head)."""
        for pid in descendants(self.procs[node - 1].pid):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        raise AssertionError(f"no raylet under Ray node {node}")

    def stop(self) -> None:
        pids = [p.pid for p in self.procs]
        everything = pids + [d for p in pids for d in descendants(p)]
        stop_pids(list(reversed(pids)), deadline_s=15)
        stop_pids([p for p in everything if _alive(p)], deadline_s=5)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
