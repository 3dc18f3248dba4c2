"""`kinsul sweep PRESET`: an Optuna study over the preset's grid; each trial trains and evaluates through the
same code as `kinsul train` / `kinsul eval`, as an MLflow child run of the sweep's parent run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from kinsul.config.loader import load_config
from kinsul.sweeps.spec import SweepSpec, load_sweep

SWEEP_TAG = "kinsul.sweep"


def study_name(preset: str) -> str:
    return Path(preset).stem


def _storage(spec: SweepSpec) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(spec.storage, heartbeat_interval=spec.heartbeat_s,
                                      grace_period=2 * spec.heartbeat_s)  # fmt: skip


def _parent_run(client: MlflowClient, experiment: str, name: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    found = client.search_runs([exp_id], f"tags.`{SWEEP_TAG}` = '{name}' and tags.`kinsul.role` = 'parent'")
    if found:
        return found[0].info.run_id
    return client.create_run(
        exp_id, run_name=f"sweep-{name}", tags={SWEEP_TAG: name, "kinsul.role": "parent"}
    ).info.run_id


def run_sweep(preset: str, overrides: list[str] = (), resume: bool = False) -> optuna.Study:
    from kinsul.evaluation.evaluate import evaluate
    from kinsul.training.train import RUN_ID_FILE, train

    overrides = list(overrides)
    spec = load_sweep(preset, overrides)  # every grid point validated before any trial
    base = load_config(preset, overrides)
    name = study_name(preset)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client = MlflowClient(tracking_uri=base.tracking.uri)
    parent = _parent_run(client, base.tracking.experiment, name)
    storage = _storage(spec)
    sampler = optuna.samplers.GridSampler(spec.grid, seed=base.seed)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction=spec.direction,
                                load_if_exists=True)  # fmt: skip
    if exists and not resume:
        complete = [t.params for t in study.get_trials(states=(TrialState.COMPLETE,))]
        if all(p in complete for p in spec.points()):
            return study  # finished earlier: nothing to run, the caller reports
        raise FileExistsError(f"study '{name}' in {spec.storage} is unfinished: pass --resume to finish it")
    callbacks = []
    if resume:
        # Workers sharing a study (`kinsul sweep NAME --resume` on several machines): fail the trials of dead
        # workers, queue every grid point that is neither done, running nor queued (the grid sampler would count
        # failed points as visited), then all workers pop the queue until it is empty.
        optuna.storages.fail_stale_trials(study)
        live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        taken = [t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(states=live)]
        for point in spec.points():
            if point not in taken:
                study.enqueue_trial(point, skip_if_exists=False)
        callbacks.append(_stop_when_queue_empty)
    todo = len(spec.points())

    def objective(trial: optuna.Trial) -> float:
        params = {k: trial.suggest_categorical(k, v) for k, v in spec.grid.items()}
        trial_overrides = [*overrides, *(f"{k}={v}" for k, v in params.items()),
                           f"trainer.run_name={name}-t{trial.number:03d}",
                           f"tracking.parent_run_id={parent}"]  # fmt: skip
        cfg = load_config(preset, trial_overrides)
        trial.set_user_attr("strategy", cfg.strategy.name)
        trial.set_user_attr("seed", cfg.seed)
        run_dir = Path(cfg.trainer.runs_dir) / f"{name}-t{trial.number:03d}"
        try:
            train(cfg, progress=False)
            if not spec.evaluate:
                return math.nan
            metrics, _ = evaluate(run_dir)
        except BaseException as e:
            if (run_dir / RUN_ID_FILE).exists():
                run_id = (run_dir / RUN_ID_FILE).read_text().strip()
                client.set_tag(run_id, "error", f"{type(e).__name__}: {e}"[:5000])
                client.set_terminated(run_id, "FAILED")
            raise
        child = (run_dir / RUN_ID_FILE).read_text().strip()
        client.set_tag(child, SWEEP_TAG, name)
        client.set_tag(child, "kinsul.trial", str(trial.number))
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        return metrics[spec.objective]

    study.set_user_attr("mlflow_parent_run_id", parent)
    if not resume or study.get_trials(states=(TrialState.WAITING,)):
        study.optimize(
            objective, n_trials=todo, catch=(Exception,), callbacks=callbacks, show_progress_bar=True
        )
    complete = [t.params for t in study.get_trials(states=(TrialState.COMPLETE,))]
    if all(p in complete for p in spec.points()):
        client.set_terminated(parent, "FINISHED")
    return study


def _stop_when_queue_empty(study: optuna.Study, _trial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()
