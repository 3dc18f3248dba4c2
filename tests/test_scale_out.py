"""Sweeps across machines, for real: a PostgreSQL server holds the Optuna study and backs an `mlflow server`, and
`kinsul sweep --resume` workers run against both at once, each with its own temporary folder and run folder (as
on two machines: no lock or file is shared between them). Checked: every grid point done exactly once, every
MLflow child FINISHED or KILLED under one parent, artifacts through the server, the report from the shared
stores, and a worker killed mid-trial whose point a restarted worker completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from servers import mlflow_server, postgres_server

KINSUL = str(Path(sys.executable).parent / "kinsul")
GRID = "{strategy.name: [naive, stop_grad], seed: [0, 1]}"
POINTS = {(s, seed) for s in ("naive", "stop_grad") for seed in (0, 1)}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(PostgreSQL URL, MLflow server URL, artifact folder): one pair of servers for the module; each test
    uses its own study and experiment in them."""
    root = tmp_path_factory.mktemp("servers")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    with postgres_server() as database, mlflow_server(database("mlflow"), artifacts) as url:
        yield database, url, artifacts


def _preset(folder: Path, name: str, db: str) -> Path:
    preset = folder / f"{name}.yaml"
    preset.write_text(f"""base: micro
sweep:
  grid: {GRID}
  storage: {db}
  heartbeat_s: 2
trainer: {{max_steps: 2, curve_every: 0}}
eval: {{episodes: 1, latency_repeats: 1, probe_samples: 14, videos: 0}}
""")
    return preset


def _worker(preset: Path, machine: Path, micro_root: Path, url: str, experiment: str) -> subprocess.Popen:
    """A `kinsul sweep --resume` worker as on its own machine: its own working folder, temp folder and runs."""
    machine.mkdir(parents=True, exist_ok=True)
    (machine / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(machine / "tmp"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [KINSUL, "sweep", str(preset), "--resume", f"data.root={micro_root / 'data'}", f"tracking.uri={url}",
           f"tracking.experiment={experiment}", "trainer.threads=1"]  # fmt: skip
    log = open(machine / "worker.log", "a")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(
        cmd, cwd=machine, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _children(url: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("kinsul.role") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("kinsul.role") != "parent"]


def _done_once(study: optuna.Study) -> None:
    complete = [
        (t.params["strategy.name"], t.params["seed"]) for t in study.get_trials(states=(TrialState.COMPLETE,))
    ]
    assert Counter(complete) == Counter(POINTS), complete  # every point, each exactly once


@pytest.mark.integration
def test_two_workers_on_postgresql_and_an_mlflow_server_split_the_grid(servers, micro_root, tmp_path):
    database, url, artifacts = servers
    db = database("shared")  # the study's own database
    preset = _preset(tmp_path, "shared", db)
    workers = [_worker(preset, tmp_path / f"machine{i}", micro_root, url, "shared") for i in (1, 2)]
    codes = [w.wait(timeout=300) for w in workers]
    logs = [(tmp_path / f"machine{i}" / "worker.log").read_text()[-3000:] for i in (1, 2)]
    assert codes == [0, 0], logs  # no worker died
    study = optuna.load_study(study_name="shared", storage=db)
    _done_once(study)
    parents, children = _children(url, "shared")
    assert len(parents) == 1, [p.info.run_id for p in parents]  # one parent, created by one worker
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    ran = [len(list((tmp_path / f"machine{i}" / "runs").glob("shared-*"))) for i in (1, 2)]
    assert sum(ran) == 4 and min(ran) >= 1, ran  # both machines worked
    # artifacts went through the server into its destination folder, not into a worker's folder
    assert list(artifacts.rglob("eval/metrics.json")) and not list(tmp_path.rglob("mlartifacts"))
    report = subprocess.run([KINSUL, "report", str(preset), f"tracking.uri={url}", "tracking.experiment=shared"],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| naive | 2 |" in report.stdout and "| stop_grad | 2 |" in report.stdout


@pytest.mark.integration
def test_a_worker_killed_mid_trial_leaves_its_point_to_the_other(servers, micro_root, tmp_path):
    """A lost machine's trial stays RUNNING without a heartbeat; the surviving worker's trial loop fails it once
    the grace period is over (Optuna's fail_stale_trials), marks its MLflow run KILLED, queues the point again
    and runs it: the grid completes without the lost machine. A worker restarted there finds nothing to do."""
    database, url, _ = servers
    db = database("killed")
    preset = _preset(tmp_path, "killed", db)
    one, two = tmp_path / "machine1", tmp_path / "machine2"
    first = _worker(preset, one, micro_root, url, "killed")
    deadline = time.monotonic() + 120
    while not list((one / "runs").glob("killed-*/mlflow_run_id")):  # its first trial is training
        assert first.poll() is None and time.monotonic() < deadline, (one / "worker.log").read_text()[-3000:]
        time.sleep(0.2)
    second = _worker(preset, two, micro_root, url, "killed")
    os.killpg(first.pid, signal.SIGKILL)  # the machine is lost: no handler runs, its trial stays RUNNING
    first.wait()
    lost = next((one / "runs").glob("killed-*")).name
    assert second.wait(timeout=300) == 0, (two / "worker.log").read_text()[-3000:]
    study = optuna.load_study(study_name="killed", storage=db)
    _done_once(study)
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 1  # the lost trial, failed by the survivor
    assert (two / "runs" / lost).is_dir()  # the survivor ran the lost point
    parents, children = _children(url, "killed")
    assert len(parents) == 1 and MlflowClient(url).get_run(parents[0].info.run_id).info.status == "FINISHED"
    statuses = Counter((c.info.run_name, c.info.status) for c in children)
    assert statuses[(lost, "KILLED")] == 1 and statuses[(lost, "FINISHED")] == 1, statuses
    assert sum(c.info.status == "FINISHED" for c in children) == 4
    restarted = _worker(preset, one, micro_root, url, "killed")
    assert restarted.wait(timeout=300) == 0, (one / "worker.log").read_text()[-3000:]
    assert len(optuna.load_study(study_name="killed", storage=db).trials) == len(study.trials)  # nothing ran


@pytest.mark.integration
def test_workers_flag_starts_local_workers_that_share_one_grid(micro_root, tmp_path):
    """`kinsul sweep PRESET --workers 2`: two worker processes on this machine's sqlite stores, threads split,
    every point once, one report at the end."""
    preset = _preset(tmp_path, "local", f"sqlite:///{tmp_path / 'optuna.db'}")
    done = subprocess.run([KINSUL, "sweep", str(preset), "--workers", "2", f"data.root={micro_root / 'data'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "workers ended with exit codes [0, 0]" in done.stdout
    assert "| naive | 2 |" in done.stdout and "| stop_grad | 2 |" in done.stdout
    _done_once(optuna.load_study(study_name="local", storage=f"sqlite:///{tmp_path / 'optuna.db'}"))
    logs = [(tmp_path / "sweeps" / "local" / f"worker-{k}.log").read_text() for k in (0, 1)]
    assert all("Traceback" not in log for log in logs), logs
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["local-naive-s0", "local-naive-s1", "local-stop_grad-s0", "local-stop_grad-s1"]


@pytest.mark.integration
def test_workers_describing_the_sweep_run_at_once_all_succeed(servers):
    """Every worker that ends a sweep writes the report into the parent run's description. On the server's
    PostgreSQL a plain set_tag is a read-then-insert, so the first description written by two workers at
    once lost one of them to a duplicate key (a worker exiting 1 at the very end); the tracker writes it the
    way MLflow retries concurrent tag inserts."""
    import threading

    from kinsul import tracking
    from kinsul.config.sections import TrackingConfig

    _, url, _ = servers
    tracker = tracking.MLflowTracker(TrackingConfig(uri=url, experiment="describe"))
    client = MlflowClient(url)
    experiment = client.create_experiment("describe")
    for attempt in range(5):  # a race: a few fresh runs give it every chance to show
        run = client.create_run(experiment).info.run_id
        start, errors = threading.Barrier(6), []

        def describe(i, run=run, start=start, errors=errors):
            start.wait()
            try:
                tracker.describe(run, f"report {i}")
            except Exception as e:  # noqa: BLE001 (collected, the assertion names it)
                errors.append(e)

        threads = [threading.Thread(target=describe, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, (attempt, errors[0])
        assert client.get_run(run).data.tags["mlflow.note.content"] in {f"report {i}" for i in range(6)}
