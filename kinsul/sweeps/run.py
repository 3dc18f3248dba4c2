"""`kinsul sweep PRESET`: an Optuna study over the preset's grid or search space; each trial trains and evaluates
through the same code as `kinsul train` / `kinsul eval`, as an MLflow child run of the sweep's parent run."""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from kinsul import tracking
from kinsul.config.loader import load_config
from kinsul.config.sections import TrackingConfig
from kinsul.fields import ConfigError
from kinsul.sweeps.busy import SweepBusy
from kinsul.sweeps.spec import PRUNE_METRIC, VARIANT, SweepSpec, load_sweep, split_overrides

SWEEP_TAG = "kinsul.sweep"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)  # a pruned trial is a result, not a gap to fill
# user attr of a trial ended unrun (a duplicate grid point): neither result nor gap
SKIPPED = "kinsul.skipped"
PARENT = "mlflow_parent_run_id"  # study user attr: the sweep's MLflow parent run
PARENT_WAIT_S = 60.0  # how long a worker waits for the study's creator to record the parent run


def study_name(preset: str) -> str:
    return Path(preset).stem


def storage(spec: SweepSpec, on_dead_trial=None) -> optuna.storages.RDBStorage:
    """The study's storage. ``on_dead_trial(study, trial)`` runs for each trial of a dead worker (no heartbeat
    for 2 x heartbeat_s) that this worker fails: Optuna calls it from every worker's trial loop and on
    --resume, and exactly one worker succeeds in failing a given trial."""
    return optuna.storages.RDBStorage(spec.storage, heartbeat_interval=spec.heartbeat_s,
                                      grace_period=2 * spec.heartbeat_s,
                                      heartbeat_stale_trial_callback=on_dead_trial)  # fmt: skip


def setup_lock(storage_url: str, tracking_uri: str) -> contextlib.AbstractContextManager:
    """A sqlite store lives on one machine, and several workers started at the same instant on fresh sqlite
    files would race to create their schemas: a lock beside the file covers every worker that can open it.
    Server stores need none: their set-up is made safe by the stores' own guarantees (`open_study`,
    `parent_run`, `_retrying`), so workers on different machines need no shared folder."""
    for url in (storage_url, tracking_uri):
        if url.startswith("sqlite:///"):
            return FileLock(f"{url.removeprefix('sqlite:///')}.setup.lock")
    return contextlib.nullcontext()


def _retrying(make, attempts: int = 5):
    """``make()``, again after a short wait if a concurrent worker's identical set-up made it fail (two
    workers creating Optuna's schema on a fresh PostgreSQL database: one of them loses on a unique index)."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return make()
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(name: str, store, spec: SweepSpec, seed: int) -> tuple[optuna.Study, bool]:
    """(the study, whether this worker created it). Creation is the storage's unique study name: of several
    workers starting together, on one machine or many, exactly one creates it."""
    kwargs = dict(sampler=spec.sampler(seed), pruner=spec.make_pruner())
    try:
        study = optuna.create_study(study_name=name, storage=store, direction=spec.direction, **kwargs)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=store, **kwargs), False


def study_parent(study: optuna.Study, created: bool, make_parent, wait_s: float = PARENT_WAIT_S) -> str:
    """The sweep's MLflow parent run id, kept in the study: the worker that created the study makes the parent
    run and records it; the others wait for it (a creator that died before recording it is replaced after
    ``wait_s``)."""
    deadline = time.monotonic() + (0 if created else wait_s)
    while True:
        parent = study.user_attrs.get(PARENT)  # read from the storage at each access
        if parent:
            return parent
        if time.monotonic() >= deadline:
            parent = make_parent()
            study.set_user_attr(PARENT, parent)
            return parent
        time.sleep(0.25)


def parent_run(client: MlflowClient, tracking: TrackingConfig, name: str) -> str:
    """The sweep's MLflow run (created once; a resumed sweep keeps logging to it)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(tracking.experiment)
    if exp is None:
        try:
            exp_id = client.create_experiment(tracking.experiment, tracking.artifact_location())
        except MlflowException as e:  # another worker created it first: the name is unique in the store
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp_id = client.get_experiment_by_name(tracking.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
    found = client.search_runs([exp_id], f"tags.`{SWEEP_TAG}` = '{name}' and tags.`kinsul.role` = 'parent'")
    if found:
        return found[0].info.run_id
    return client.create_run(
        exp_id, run_name=f"sweep-{name}", tags={SWEEP_TAG: name, "kinsul.role": "parent"}
    ).info.run_id


def finished(study: optuna.Study, spec: SweepSpec) -> bool:
    done = study.get_trials(deepcopy=False, states=DONE)
    if spec.kind == "search":
        return len(done) >= spec.n_trials
    done_points = [t.params for t in done]
    return all(p in done_points for p in spec.points())


def _mark_killed(client: MlflowClient, study: optuna.Study, trial: FrozenTrial, name: str, parent: str,
                 runs_dir: Path, by_values: bool) -> None:  # fmt: skip
    """A worker that died (SIGKILL, a stopped session, a lost machine) left its trial's MLflow child run
    RUNNING: mark it KILLED with the reason, so the UI does not show it as live. The run is found under the
    sweep's parent by its run name (so from any machine), or through its run folder's id. A point that another
    worker already runs again is left alone."""
    live = (TrialState.RUNNING, TrialState.WAITING)
    again = [
        t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(deepcopy=False, states=live)
    ]
    if not trial.params or trial.params in again:
        return
    # by its values, or by trial number (how sweeps named grid runs before they were named by values)
    names = sorted(
        {
            child_name(name, trial.params, trial.number, by_values),
            child_name(name, trial.params, trial.number, False),
        }
    )
    run_ids = {r for n in names if (r := tracking.run_id_of(runs_dir / n))}
    experiment = client.get_run(parent).info.experiment_id
    for n in names:
        found = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}' and attributes.run_name = "
                                   f"'{n}' and attributes.status = 'RUNNING'")  # fmt: skip
        run_ids |= {r.info.run_id for r in found}
    for run_id in sorted(run_ids):
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(
                run_id, "error", f"its sweep worker died (Optuna trial {trial.number} had no heartbeat)"
            )
            client.set_terminated(run_id, "KILLED")


def _requeue_trial(study: optuna.Study, spec: SweepSpec, trial: FrozenTrial) -> None:
    """Queue a dead worker's trial again: its grid point, or a search trial's parameters."""
    point = trial.system_attrs.get("fixed_params", trial.params)
    if not point:
        return
    if spec.kind == "grid":
        live = (*DONE, TrialState.RUNNING, TrialState.WAITING)
        taken = [t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(deepcopy=False, states=live)
                 if SKIPPED not in t.user_attrs]  # fmt: skip
        if point in taken:
            return
    study.enqueue_trial(point, skip_if_exists=False)


def _requeue(study: optuna.Study, spec: SweepSpec) -> None:
    """Resume, once the trials of dead workers are failed: queue what is missing. A grid queues every point
    that is neither done, running nor queued (the grid sampler counts failed points as visited); a search queues the
    parameters of its failed trials again. Every worker then pops the queue first. Workers resuming at once
    may queue one point twice; `_duplicate_of` lets only one of the copies run."""
    live = (*DONE, TrialState.RUNNING, TrialState.WAITING)
    taken = [t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(states=live)
             if SKIPPED not in t.user_attrs]  # fmt: skip
    if spec.kind == "grid":
        missing = spec.points()
    else:
        missing = [t.params for t in study.get_trials(states=(TrialState.FAIL,))]
    for point in missing:
        if point not in taken:
            study.enqueue_trial(point, skip_if_exists=False)
            taken.append(point)


def run_sweep(preset: str, overrides: list[str] = (), resume: bool = False) -> optuna.Study:
    spec = load_sweep(preset, list(overrides), fits=True)  # every point validated and fitted before any trial
    from kinsul.stores import check_sqlite_store

    check_sqlite_store(spec.storage, "sweep.storage", "Optuna")  # before the set-up lock is made beside it
    overrides, _ = split_overrides(overrides)  # what every trial gets; `sweep.*` ones went into the spec
    # heartbeats and fail_stale_trials are marked experimental; they are what makes shared resume safe
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    base = load_config(preset, overrides)
    from kinsul.training.train import check_machine

    check_machine(base.trainer)  # before any trial: every trial would fail the same way
    if not base.tracking.enabled:
        raise ConfigError("tracking.enabled", "a sweep records its trials and its report in MLflow: leave it true "
                          "(point tracking.uri at a local sqlite file to keep everything in this folder)")  # fmt: skip
    name = study_name(preset)
    with setup_lock(spec.storage, base.tracking.uri):
        client = tracking.client(base.tracking.uri)  # a new sqlite store is migrated here: under the lock
        runs_dir, by_values = Path(base.trainer.runs_dir), spec.kind == "grid"
        sweep_parent: list[str] = []  # known once the study is open

        # Optuna calls this for each dead worker's trial that this worker fails (exactly one worker does)
        def on_dead_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            if sweep_parent:
                _mark_killed(client, study, trial, name, sweep_parent[0], runs_dir, by_values)
            _requeue_trial(study, spec, trial)

        store = _retrying(lambda: storage(spec, on_dead_trial))
        study, created = _retrying(lambda: open_study(name, store, spec, base.seed))
        exists = not created
        parent = study_parent(study, created, lambda: parent_run(client, base.tracking, name))
        sweep_parent.append(parent)
        if exists and not resume:
            if finished(study, spec):
                return study  # finished earlier: nothing to run, the caller reports
            raise FileExistsError(
                f"study '{name}' in {spec.storage} is unfinished: pass --resume to finish it"
            )
        if resume:
            # dead workers' trials: failed here, on_dead_trial marks their runs and re-queues their points
            optuna.storages.fail_stale_trials(study)
            _requeue(study, spec)
    objective = Objective(
        preset, overrides, spec, name, parent, client, queue_only=resume and spec.kind == "grid"
    )
    if spec.kind == "grid":
        # A fresh grid runs every point; resumed workers pop the shared queue until it is empty.
        # A resumed worker runs until the queue is empty, dead workers' points that it re-queues on the way included.
        queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        n_trials = None if resume else len(spec.points())
        callbacks = [_stop_when_queue_empty] if resume else []
        if queued or not resume:
            study.optimize(objective, n_trials=n_trials, catch=(Exception,), callbacks=callbacks,
                           show_progress_bar=not resume)  # fmt: skip
    else:
        # Queued (failed) trials run first; MaxTrialsCallback stops every worker once enough are done.
        remaining = spec.n_trials - len(study.get_trials(deepcopy=False, states=DONE))
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, catch=(Exception,), show_progress_bar=True,
                           callbacks=[optuna.study.MaxTrialsCallback(spec.n_trials, states=DONE)])  # fmt: skip
    if finished(study, spec):
        client.set_terminated(parent, "FINISHED")
    elif resume:
        check_busy(study, spec, store)
    return study


def heartbeat_ages(store: optuna.storages.RDBStorage, study: optuna.Study) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat, by trial number, by the database's own clock (the
    comparison Optuna's fail_stale_trials makes). Optuna has no public reader for it: on an unknown schema,
    no ages (the message then gives the grace period alone)."""
    try:
        from optuna.storages._rdb import models
        from sqlalchemy import func

        with store.scoped_session() as session:
            now = session.execute(func.now()).scalar().replace(tzinfo=None)
            rows = (session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
                    .join(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                    .filter(models.TrialModel.study_id == study._study_id,
                            models.TrialModel.state == TrialState.RUNNING).all())  # fmt: skip
        return {number: (now - beat.replace(tzinfo=None)).total_seconds() for number, beat in rows}
    except Exception:  # noqa: BLE001 (an internal table: a newer Optuna may change it; the ages are a courtesy)
        return {}


def check_busy(study: optuna.Study, spec: SweepSpec, store: optuna.storages.RDBStorage) -> None:
    """After a resumed worker ran out of queue: an unfinished study with RUNNING trials is one line, saying
    which trials, and how long until a dead worker's trials can be re-queued."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if finished(study, spec) or not running:
        return
    grace = 2 * spec.heartbeat_s
    ages = heartbeat_ages(store, study)
    wait = max((grace - ages[t.number] for t in running if t.number in ages), default=grace)
    numbers = ", ".join(str(t.number) for t in running)
    raise SweepBusy(f"nothing left to run here, but trial(s) {numbers} of study '{study.study_name}' are RUNNING: "
                    f"another worker is running them, or its worker died less than {grace:.0f} s ago (the "
                    f"heartbeat grace period); if no worker runs them, --resume again in {max(wait, 1):.0f} s "
                    "re-queues them", study)  # fmt: skip


def child_name(sweep: str, params: dict[str, Any], number: int, by_values: bool) -> str:
    """A trial's run name: a grid point's by its values (variant or strategy, other swept values, seed:
    `paper-ki-s0`, `continuum_alpha-ki-kv_alpha0.1-s2`, `topk-topk_k2-s0`), stable across resumes; a search's by
    its trial number."""
    if not by_values:
        return f"{sweep}-t{number:03d}"
    named = [k for k in (VARIANT, "strategy.name") if k in params]
    parts = [str(params[k]) for k in named]
    parts += [f"{k.rsplit('.', 1)[-1]}{v}" for k, v in params.items() if k not in (*named, "seed")]
    if "seed" in params:
        parts.append(f"s{params['seed']}")
    # a run name is a folder name (trainer.run_name): any other character (a list value's brackets, a path's
    # separator) becomes "_"
    return re.sub(r"[^\w.+=,@-]", "_", "-".join([sweep, *parts])).replace("..", "_")


class Objective:
    """One trial: `kinsul train` with the trial's values as overrides, then `kinsul eval` of its run folder."""

    def __init__(self, preset: str, overrides: list[str], spec: SweepSpec, name: str, parent: str,
                 client: MlflowClient, queue_only: bool = False):  # fmt: skip
        self.preset, self.overrides, self.spec, self.name = preset, overrides, spec, name
        self.parent, self.client, self.queue_only = parent, client, queue_only

    def __call__(self, trial: optuna.Trial) -> float:
        from kinsul.evaluation import evaluate as evaluate_lib
        from kinsul.runs.signals import RunInterrupted
        from kinsul.sweeps.pruning import TrialReport
        from kinsul.training.train import train

        if self.queue_only and not _was_queued(trial):
            # Another worker popped the last queued point between our queue check and this trial: the grid
            # sampler made up a new one, a duplicate. End it unrun and stop this worker.
            trial.set_user_attr(SKIPPED, "the queue was emptied by another worker")
            trial.study.stop()
            raise optuna.TrialPruned("not a queued grid point")
        if self.spec.kind == "grid" and (earlier := _duplicate_of(trial)) is not None:
            trial.set_user_attr(SKIPPED, f"a copy of trial {earlier}'s grid point")
            raise optuna.TrialPruned(f"trial {earlier} runs or ran this grid point")
        params = self.spec.suggest(trial)
        run = child_name(self.name, params, trial.number, self.spec.kind == "grid")
        cfg = load_config(self.preset, [*self.overrides, *self.spec.overrides(params),
                                        f"trainer.run_name={run}", f"tracking.parent_run_id={self.parent}"])  # fmt: skip
        trial.set_user_attr("strategy", cfg.strategy.name)
        trial.set_user_attr("seed", cfg.seed)
        run_dir = Path(cfg.trainer.runs_dir) / run
        reporter = TrialReport(trial)
        run_id = None  # the child run's MLflow id, once training has written it
        # A grid point's run folder is named by its values, so a point requeued after its worker died (a killed
        # session) continues that run from its last checkpoint, in the same MLflow child run.
        resumed = (run_dir / "checkpoints" / "last.ckpt").is_file()
        try:
            try:
                train(cfg, resume=resumed, progress=False, callbacks=[reporter])
                metrics = (
                    evaluate_lib.evaluate(run_dir)[0] if self.spec.evaluate else {PRUNE_METRIC: reporter.last}
                )
            finally:
                run_id = tracking.run_id_of(run_dir)
                if run_id:
                    self._tag_child(run_id, trial, params, resumed)
        except optuna.TrialPruned as e:
            if run_id:
                self.client.set_tag(run_id, "pruned", str(e))
                self.client.set_terminated(run_id, "KILLED")
            raise
        except RunInterrupted as e:  # a signal: the trial fails (so --resume re-queues it), its run is KILLED
            if run_id:
                self.client.set_tag(run_id, "interrupted", str(e))
                self.client.set_terminated(run_id, "KILLED")
            raise
        except BaseException as e:
            if run_id:
                self.client.set_tag(run_id, "error", f"{type(e).__name__}: {e}"[:5000])
                self.client.set_terminated(run_id, "FAILED")
            raise
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        if self.spec.objective not in metrics:
            raise KeyError(f"sweep.objective '{self.spec.objective}' is not a metric of this trial's evaluation; "
                           f"available: {sorted(metrics)}")  # fmt: skip
        return metrics[self.spec.objective]  # NaN: Optuna marks the trial FAIL

    def _tag_child(self, run_id: str, trial: optuna.Trial, params: dict[str, Any], resumed: bool) -> None:
        trial.set_user_attr("mlflow_run_id", run_id)
        if resumed:  # the earlier attempt's failure is history now: keep it under another name
            run = self.client.get_run(run_id)
            if "error" in run.data.tags:
                self.client.set_tag(run_id, "previous_error", run.data.tags["error"])
                self.client.delete_tag(run_id, "error")
            self.client.set_tag(run_id, "kinsul.resumed", "true")
        self.client.set_tag(run_id, SWEEP_TAG, self.name)
        self.client.set_tag(run_id, "kinsul.trial", str(trial.number))
        for key, value in params.items():
            self.client.set_tag(run_id, f"sweep.{key}", str(value))


def _duplicate_of(trial: optuna.Trial) -> int | None:
    """The number of an earlier trial holding this queued grid point (waiting, running or done), if any.
    Optuna pops a waiting trial atomically, so of two copies of a point the later-numbered one always sees the
    earlier one still waiting, or running, or done: exactly one copy runs, on one machine or many."""
    trials = trial.study.get_trials(deepcopy=False)
    point = next(t for t in trials if t.number == trial.number).system_attrs.get("fixed_params")
    if point is None:
        return None
    live = (*DONE, TrialState.RUNNING, TrialState.WAITING)
    for t in trials:
        earlier = t.number < trial.number and t.state in live and SKIPPED not in t.user_attrs
        if earlier and t.system_attrs.get("fixed_params", t.params) == point:
            return t.number
    return None


def _was_queued(trial: optuna.Trial) -> bool:
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    return "fixed_params" in frozen.system_attrs


def _stop_when_queue_empty(study: optuna.Study, _trial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()
