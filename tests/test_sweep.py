"""A 2-trial grid on the micro preset: real Optuna sqlite storage and MLflow store, kill and resume, report."""

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from kinsul.config import ConfigError
from kinsul.evaluation import evaluate as evaluate_lib
from kinsul.sweeps.report import report
from kinsul.sweeps.run import run_sweep


def write_preset(tmp_path, grid="{strategy.name: [naive, ki], seed: [0]}"):
    preset = tmp_path / "mini.yaml"
    preset.write_text(f"""base: micro
sweep:
  grid: {grid}
  storage: sqlite:///{tmp_path}/optuna.db
  heartbeat_s: 1
eval: {{episodes: 1, latency_repeats: 1, probe_samples: 14, videos: 0}}
""")
    return str(preset)


def test_grid_kill_resume_and_report(micro_root, tmp_path, monkeypatch):
    preset = write_preset(tmp_path)
    overrides = [f"data.root={micro_root / 'data'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"trainer.runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    real = evaluate_lib.evaluate
    calls = []

    def killed_in_second_trial(run_dir, *args, **kwargs):
        calls.append(run_dir)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run_dir, *args, **kwargs)

    monkeypatch.setattr(evaluate_lib, "evaluate", killed_in_second_trial)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(preset, overrides)
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(preset, overrides)
    study = run_sweep(preset, overrides, resume=True)
    assert len(calls) == 3  # the resumed sweep ran only the remaining trial
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["strategy.name"] for t in complete) == ["ki", "naive"]
    assert all("eval/success" in t.user_attrs and "eval/retention" in t.user_attrs for t in complete)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kinsul").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("kinsul.role") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED", "FINISHED"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert "KeyboardInterrupt" in next(r for r in children if r.info.status == "FAILED").data.tags["error"]

    text = report(preset, overrides, tmp_path / "out")
    assert "| naive | 1 |" in text and "| ki | 1 |" in text
    assert (tmp_path / "out" / "report.csv").is_file()


def test_unknown_key_or_strategy_fails_before_any_trial(micro_root, tmp_path):
    overrides = [f"data.root={micro_root / 'data'}"]
    with pytest.raises(ConfigError, match="trainer.max_stepz"):
        run_sweep(write_preset(tmp_path, "{trainer.max_stepz: [1, 2]}"), overrides)
    with pytest.raises(ConfigError, match="unknown strategy 'kii'"):
        run_sweep(write_preset(tmp_path, "{strategy.name: [naive, kii]}"), overrides)
    assert not (tmp_path / "runs").exists()
