"""Sweeps on the micro preset with real Optuna sqlite storage and a real MLflow store: a grid killed and resumed,
a TPE search with pruning killed and resumed, the report and its plots, and bad search spaces."""

import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from kinsul.cli import main
from kinsul.config import ConfigError, load_config
from kinsul.evaluation import evaluate as evaluate_lib
from kinsul.sweeps.pruning import TrialReport
from kinsul.sweeps.report import report
from kinsul.sweeps.run import child_name, run_sweep
from kinsul.sweeps.run import storage as storage_for
from kinsul.sweeps.spec import load_sweep
from kinsul.training import train as train_lib


def write_preset(tmp_path, grid="{strategy.name: [naive, ki], seed: [0]}", space="grid", heartbeat_s=1):
    preset = tmp_path / "mini.yaml"
    preset.write_text(f"""base: micro
sweep:
  {space}: {grid}
  storage: sqlite:///{tmp_path}/optuna.db
  heartbeat_s: {heartbeat_s}
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
    # the killed point ran again in its own run folder (named by its values) and MLflow run: no orphan run
    assert sorted(r.info.run_name for r in children) == ["mini-ki-s0", "mini-naive-s0"]
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    resumed = next(r for r in children if r.data.tags.get("kinsul.resumed"))
    assert "KeyboardInterrupt" in resumed.data.tags["previous_error"] and "error" not in resumed.data.tags

    text = report(preset, overrides, tmp_path / "out")
    assert "| naive | 1 |" in text and "| ki | 1 |" in text
    assert "| success | success reach | success push |" in text  # each headline family next to their mean
    assert (tmp_path / "out" / "report.csv").is_file()
    for plot in (
        "learning_curves",
        "success_curves",
        "retention",
        "success",
        "speed_vs_retention",
        "success_vs_retention",
    ):
        assert (tmp_path / "out" / f"{plot}.png").stat().st_size > 1000
    # each trial names the VLM it started from; one VLM: no domain-gap figure
    from kinsul.runs.pretrained import vlm_name

    assert {r.data.tags["kinsul.vlm"] for r in children} == {vlm_name(load_config(preset, overrides))}
    assert not (tmp_path / "out" / "domain_gap.png").exists()
    # runs logged before the tag existed started from their own sweep's VLM, also when another regime's sweep
    # reads them as its reference rows (its config names another VLM)
    from kinsul.sweeps.report import collect

    for child in children:
        client.delete_tag(child.info.run_id, "kinsul.vlm")
    other = load_config(preset, [*overrides, "data.vlm_domain=foreign"])
    assert vlm_name(other) != vlm_name(load_config(preset, overrides))
    rows = collect(preset, other, load_sweep(preset))
    assert {r.vlm for runs in rows.values() for r in runs} == {vlm_name(load_config(preset, overrides))}


def test_the_domain_gap_figure_places_each_setting_at_its_vlms_location_error(tmp_path):
    from kinsul.sweeps.plots import TrialRun, domain_gap, gap_points
    from kinsul.sweeps.report import setting

    def run(vlm, strategy, options, success):
        # as the logger writes them: an option a param of its own; no options, `{}`
        params = {f"strategy.options.{k}": str(v) for k, v in options.items()} or {"strategy.options": "{}"}
        return TrialRun({"eval/success": success, "eval/retention": 0.5}, max_steps=10, vlm=vlm,
                        setting=setting(strategy, params))  # fmt: skip

    groups = {
        "naive (paper)": [run("world", "naive", {}, 0.2), run("world", "naive", {}, 0.4)],
        "mid-naive": [run("mid", "naive", {}, 0.1)],
        "mid-naive_lr": [run("mid", "naive", {"backbone_lr_scale": 0.01}, 0.3)],
        "world-naive_lr": [run("world", "naive", {"backbone_lr_scale": 0.01}, 0.5)],
        "frozen (paper)": [run("world", "frozen", {}, 0.5)],  # at one VLM only: no line
        "unmeasured": [run("elsewhere", "naive", {}, 0.9)],  # no location error recorded: left out
    }
    points = gap_points(groups, {"world": 0.126, "mid": 0.155})
    assert sorted(points) == ["naive", "naive backbone_lr_scale=0.01"]
    assert [(x, len(runs)) for x, runs in points["naive"]] == [(0.126, 2), (0.155, 1)]
    assert domain_gap(groups, {"world": 0.126, "mid": 0.155}, tmp_path).stat().st_size > 1000
    assert domain_gap(groups, {"world": 0.126}, tmp_path / "none") is None


def test_curves_of_two_regimes_are_drawn_side_by_side_in_one_colour_per_strategy(tmp_path, monkeypatch):
    """A report with another sweep's reference rows (another regime) draws each sweep's curves in its own panel,
    a row under its own name there; the reported sweep's panel first."""
    import matplotlib.pyplot as plt

    from kinsul.sweeps import plots

    def run(sweep, vlm, success):
        return plots.TrialRun({"eval/success": success}, curve=[(0, 0.3), (10, 0.1)], max_steps=10,
                              success_curve=[(0, 0.0), (10, success)], vlm=vlm, sweep=sweep)  # fmt: skip

    groups = {
        "naive": [run("paper_foreign", "foreign", 0.2), run("paper_foreign", "foreign", 0.3)],
        "ki": [run("paper_foreign", "foreign", 0.4)],
        "naive (paper)": [run("paper", "world", 0.5)],
        "stop_grad (paper)": [run("paper", "world", 0.6)],
    }
    panels = plots.by_sweep(groups)
    assert list(panels) == ["paper_foreign", "paper"]
    assert list(panels["paper_foreign"]) == ["naive", "ki"]
    assert list(panels["paper"]) == ["naive", "stop_grad"]
    drawn, save = [], plots._save

    def keep_axes(fig, path):
        drawn.append(fig.axes)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep_axes)
    assert plots.success_curves(groups, tmp_path).stat().st_size > 1000
    [(foreign, world)] = drawn
    assert "paper_foreign: VLM foreign" in foreign.get_title() and "paper: VLM world" in world.get_title()
    colour = {ax: {line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()}
              for ax in (foreign, world)}  # fmt: skip
    assert colour[foreign]["naive"] == colour[world]["naive"] != colour[world]["stop_grad"]
    styles = plots._styles(groups)  # the scatter plots: a strategy's colour, a sweep's marker
    assert (
        styles["naive"][0] == styles["naive (paper)"][0] and styles["naive"][1] != styles["naive (paper)"][1]
    )
    assert plots.success_vs_retention(groups, tmp_path).stat().st_size > 1000
    plt.close("all")


def test_unknown_key_or_strategy_fails_before_any_trial(micro_root, tmp_path):
    overrides = [f"data.root={micro_root / 'data'}"]
    with pytest.raises(ConfigError, match="trainer.max_stepz"):
        run_sweep(write_preset(tmp_path, "{trainer.max_stepz: [1, 2]}"), overrides)
    with pytest.raises(ConfigError, match="unknown strategy 'kii'"):
        run_sweep(write_preset(tmp_path, "{strategy.name: [naive, kii]}"), overrides)
    with pytest.raises(ConfigError, match="tracking.enabled"):
        run_sweep(write_preset(tmp_path, "{seed: [0, 1]}"), [*overrides, "tracking.enabled=false"])
    assert not (tmp_path / "runs").exists()


def test_search_with_pruning_kill_and_resume(micro_root, tmp_path, monkeypatch):
    """TPE over a log-scaled learning rate and a loss weight, median pruning on val/velocity_mse, objective from
    training (no evaluation); a killed trial's parameters run again on --resume and the study reaches n_trials."""
    preset = tmp_path / "tune.yaml"
    preset.write_text(f"""base: micro
strategy: {{name: ki}}
trainer: {{max_steps: 4, val_every: 1}}
sweep:
  search:
    trainer.lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}
    strategy.loss_weights.fast: {{low: 0.1, high: 1.0}}
  n_trials: 3
  startup_trials: 2
  objective: val/velocity_mse
  direction: minimize
  pruner: median
  evaluate: false
  storage: sqlite:///{tmp_path}/optuna.db
""")
    overrides = [f"data.root={micro_root / 'data'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"trainer.runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    real, calls = train_lib.train, []

    def killed_in_second_trial(cfg, *args, **kwargs):
        calls.append((cfg.trainer.lr, cfg.strategy.loss_weights["fast"]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(train_lib, "train", killed_in_second_trial)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(preset), overrides)
    study = run_sweep(str(preset), overrides, resume=True)
    assert calls[2] == calls[1]  # the killed trial's values ran first on resume
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 3 and len(calls) == 4
    for t in done:
        assert 1e-4 <= t.params["trainer.lr"] <= 1e-2 and 0.1 <= t.params["strategy.loss_weights.fast"] <= 1.0
        assert t.intermediate_values  # val/velocity_mse reported at every validation
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.value == pytest.approx(t.intermediate_values[max(t.intermediate_values)])
    text = report(str(preset), overrides)
    assert "| trial | state | trainer.lr | strategy.loss_weights.fast | val/velocity_mse |" in text
    assert text.startswith("| strategy | trials |")


def test_pruning_stops_a_trial_worse_than_the_median():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1), direction="minimize")

    def validate(trial, value, step=10):
        trainer = SimpleNamespace(
            callback_metrics={"val/velocity_mse": value}, global_step=step, sanity_checking=False
        )
        TrialReport(trial).on_validation_end(trainer, None)

    good = study.ask()
    validate(good, 0.5)
    study.tell(good, 0.5)
    with pytest.raises(optuna.TrialPruned, match="val/velocity_mse=0.9 at step 10"):
        validate(study.ask(), 0.9)
    validate(study.ask(), 0.3)  # better than the median: goes on


@pytest.mark.parametrize(
    "space, grid, error",
    [
        ("search", "{trainer.lr: {low: 0.1, high: 0.01}}\n  n_trials: 2", "sweep.search.trainer.lr.low/high"),
        ("search", "{trainer.lrr: {low: 0.001, high: 0.01}}\n  n_trials: 2", "trainer.lrr"),
        (
            "search",
            "{trainer.lr: {low: 0.0, high: 0.01, log: true}}\n  n_trials: 2",
            "sweep.search.trainer.lr.low",
        ),
        ("search", "{trainer.lr: {low: 0.001, high: 0.01}}", "sweep.n_trials"),
        ("search", "{trainer.lr: 0.001}\n  n_trials: 2", "sweep.search.trainer.lr.choices"),
    ],
)
def test_bad_search_space_fails_before_any_trial(micro_root, tmp_path, space, grid, error):
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        run_sweep(write_preset(tmp_path, grid, space), [f"data.root={micro_root / 'data'}"])
    assert not (tmp_path / "runs").exists()


def test_report_has_a_row_per_swept_setting_not_only_per_strategy(micro_root, tmp_path):
    """An alpha grid under one strategy: a row per kv_alpha (not collapsed into 'ki'), seeds averaged in a row."""
    preset = write_preset(
        tmp_path, "{strategy.name: [ki], strategy.options.kv_alpha: [0.0, 1.0], seed: [0, 1]}"
    )
    overrides = [f"data.root={micro_root / 'data'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"trainer.runs_dir={tmp_path / 'runs'}", "trainer.max_steps=2", "trainer.curve_every=0"]  # fmt: skip
    run_sweep(preset, overrides)
    text = report(preset, overrides)
    assert "| ki kv_alpha=0.0 | 2 |" in text and "| ki kv_alpha=1.0 | 2 |" in text
    assert "(n=4)" in text  # pooled success: 2 seeds x 2 headline families (reach, push) x 1 episode


def test_resume_marks_the_child_run_of_a_dead_worker_killed(tmp_path):
    """A worker killed outright (no handler ran) leaves its Optuna trial RUNNING and its MLflow child RUNNING;
    --resume fails the trial (no heartbeat) and marks the child run KILLED, naming why, also from another
    machine (no run folder here: the run is found under the sweep's parent by its name)."""
    import time

    from kinsul.sweeps.run import _mark_killed, _requeue_trial, child_name
    from kinsul.sweeps.spec import SweepSpec

    spec = SweepSpec(grid={"strategy.name": ["naive"], "seed": [0]}, storage=f"sqlite:///{tmp_path}/o.db",
                     heartbeat_s=1)  # fmt: skip
    store = storage_for(spec)
    study = optuna.create_study(study_name="mini", storage=store)
    trial = study.ask()
    store.record_heartbeat(trial._trial_id)  # what a live worker's optimize() does every heartbeat_s
    trial.suggest_categorical("strategy.name", ["naive"])
    trial.suggest_categorical("seed", [0])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("kinsul")
    parent = client.create_run(exp).info.run_id
    name = child_name("mini", {"strategy.name": "naive", "seed": 0}, trial.number, True)
    run_id = client.create_run(exp, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
    time.sleep(2.5)  # past the grace period (2 x heartbeat_s) with no heartbeat: the worker is dead

    def on_dead_trial(study, dead):  # what run_sweep gives the storage: mark the run, queue the point again
        _mark_killed(client, study, dead, "mini", parent, tmp_path / "runs", by_values=True)
        _requeue_trial(study, spec, dead)

    resumed = optuna.load_study(study_name="mini", storage=storage_for(spec, on_dead_trial))
    optuna.storages.fail_stale_trials(resumed)  # a live worker's trial loop and --resume both do this
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "worker died" in run.data.tags["error"]
    assert study.trials[0].state == TrialState.FAIL
    assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]  # the point is queued again


def test_a_resumed_worker_that_finds_only_live_trials_says_how_long_to_wait(tmp_path):
    """Within the heartbeat grace period a RUNNING trial cannot be re-queued: the worker says which trial and
    how long until a dead worker's trial can be (it used to exit 0 having run nothing, without a word)."""
    from kinsul.sweeps.busy import SweepBusy
    from kinsul.sweeps.run import _requeue, check_busy
    from kinsul.sweeps.spec import SweepSpec

    spec = SweepSpec(grid={"strategy.name": ["naive"], "seed": [0]}, storage=f"sqlite:///{tmp_path}/o.db",
                     heartbeat_s=30)  # fmt: skip
    store = storage_for(spec)
    study = optuna.create_study(study_name="mini", storage=store)
    trial = study.ask()
    store.record_heartbeat(trial._trial_id)
    trial.suggest_categorical("strategy.name", ["naive"])
    trial.suggest_categorical("seed", [0])
    _requeue(study, spec)  # a fresh heartbeat: the trial stays RUNNING, nothing is queued
    assert not study.get_trials(states=(TrialState.WAITING,))
    with pytest.raises(SweepBusy, match=r"trial\(s\) 0 .* RUNNING.*--resume again in (59|60) s") as e:
        check_busy(study, spec, store)
    assert e.value.exit_code == 0  # workers of a shared sweep end this way: nothing failed
    study.tell(trial, 0.5)
    check_busy(study, spec, store)  # finished: nothing to say


def test_report_of_a_sweep_that_never_ran_says_so_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from kinsul.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["report", "quick"]) == 2
    assert "sweep 'quick' has no finished trials" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no empty MLflow or Optuna store left behind


def test_workers_started_together_on_fresh_stores_split_the_grid(micro_root, tmp_path):
    """Three `kinsul sweep --resume` processes at the same instant on new sqlite stores: the schemas, the parent
    run and the queue are created once (under the set-up lock), and the six points run exactly once between them."""
    import subprocess
    import sys
    from pathlib import Path

    # no worker dies here: a heartbeat grace of seconds, not 2 s, so that three processes starting torch on two
    # cores and sharing one sqlite file cannot look dead to each other (CI once failed a live worker's trial)
    preset = write_preset(
        tmp_path, grid="{strategy.name: [stop_grad], seed: [0, 1, 2, 3, 4, 5]}", heartbeat_s=10
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "kinsul"), "sweep", preset, "--resume", f"data.root={micro_root / 'data'}",
           f"tracking.uri={tracking}", f"trainer.runs_dir={tmp_path / 'runs'}", "trainer.max_steps=1",
           "trainer.curve_every=0", "trainer.threads=1"]  # fmt: skip
    workers = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(3)]  # fmt: skip
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], "\n\n".join(o[-3000:] for o in outputs)

    study = optuna.load_study(study_name="mini", storage=f"sqlite:///{tmp_path}/optuna.db")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["seed"] for t in complete) == [0, 1, 2, 3, 4, 5]  # 0 duplicates, 0 missing
    client = MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([client.get_experiment_by_name("kinsul").experiment_id])
    assert sum(r.data.tags.get("kinsul.role") == "parent" for r in runs) == 1
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("kinsul.role") == "trial") == [
        f"mini-stop_grad-s{s}" for s in range(6)
    ]


def test_report_reads_the_final_evaluation_not_the_curve_point_at_the_last_step(tmp_path):
    """The success curve logs eval/success up to the last training step; `kinsul eval` logs its (larger) evaluation
    later, at the best checkpoint's earlier step. MLflow's summary keeps the highest step's value, the curve's: the
    report must take the evaluation's."""
    from kinsul.sweeps.report import _final_metrics

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("kinsul")).info.run_id
    for t, (step, value) in enumerate([(0, 0.0), (1000, 0.25), (2000, 0.375)]):  # the curve, 8 episodes
        client.log_metric(run_id, "eval/success", value, timestamp=1_000 + t, step=step)
        client.log_metric(run_id, "eval/success_reach", value, timestamp=1_000 + t, step=step)
    client.log_metric(run_id, "eval/success", 0.5, timestamp=2_000, step=1000)  # the evaluation of best.ckpt
    client.log_metric(run_id, "eval/success_reach", 0.6, timestamp=2_000, step=1000)
    client.log_metric(run_id, "eval/success_n", 40, timestamp=2_000, step=1000)
    run = client.get_run(run_id)
    assert run.data.metrics["eval/success"] == 0.375  # what a plain read gets
    final = _final_metrics(client, run)
    assert (
        final["eval/success"] == 0.5 and final["eval/success_reach"] == 0.6 and final["eval/success_n"] == 40
    )


def test_report_shows_reference_rows_of_another_sweep_instead_of_rerunning_them(micro_root, tmp_path):
    """A continuum's end point already run by another sweep in the same stores is read from there (labelled with
    that sweep's name); a reference row with no finished trials is named, not silently dropped."""
    ends = write_preset(tmp_path, "{strategy.name: [naive], seed: [0]}")
    (tmp_path / "inner.yaml").write_text(f"""base: micro
sweep:
  grid: {{strategy.name: [naive], strategy.options.backbone_lr_scale: [0.1], seed: [0]}}
  storage: sqlite:///{tmp_path}/optuna.db
  reference: {{'{ends}': [naive, frozen]}}
eval: {{episodes: 1, latency_repeats: 1, probe_samples: 14, videos: 0}}
""")
    overrides = [f"data.root={micro_root / 'data'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"trainer.runs_dir={tmp_path / 'runs'}", "trainer.max_steps=2", "trainer.curve_every=0"]  # fmt: skip
    run_sweep(ends, overrides)
    inner = str(tmp_path / "inner.yaml")
    run_sweep(inner, overrides)
    text = report(inner, overrides)
    assert "| naive backbone_lr_scale=0.1 | 1 |" in text and "| naive (mini) | 1 |" in text
    assert "reference row 'frozen' of sweep 'mini': no finished trials" in text
    assert len(list((tmp_path / "runs").iterdir())) == 2  # the reference row was not trained again
    assert "side by side" not in text  # one VLM: one regime, nothing to put beside it


def test_a_reference_to_an_unknown_sweep_fails_at_load(tmp_path):
    (tmp_path / "bad.yaml").write_text("""base: micro
sweep:
  grid: {strategy.name: [naive], seed: [0]}
  reference: {no_such_preset: [naive]}
""")
    with pytest.raises(ConfigError, match="no_such_preset"):
        load_sweep(str(tmp_path / "bad.yaml"))


def test_a_speed_column_says_how_many_seeds_reached_the_target():
    from kinsul.sweeps.report import _fmt

    assert _fmt([1500.0, None, 2000.0], "speed/steps_to_success") == "1.75e+03 ± 3.5e+02 (2/3)"
    assert _fmt([1500.0, 1500.0], "speed/steps_to_success") == "1.5e+03 ± 0"  # all reached: no count
    assert _fmt([None, None], "speed/steps_to_success") == "–"
    assert _fmt([0.5, None], "eval/success") == "0.5 ± 0"


def test_the_regimes_side_by_side_are_the_vlms_with_a_row_per_setting():
    """A column group per VLM, in the order of their measured K/V location error (the world VLM first), whatever
    sweep its runs came from; a row per setting, so a sweep's variant `mid-naive` shares the row of `naive
    (paper)`; a VLM without a setting shows dashes; two rows of one VLM at one setting keep their names."""
    from kinsul.sweeps.plots import TrialRun, by_vlm
    from kinsul.sweeps.report import side_by_side

    def runs(vlm, setting, sweep, n=1):
        return [TrialRun({"eval/success": 0.5, "eval/success_n": 40.0, "eval/retention": 0.8}, vlm=vlm,
                         setting=setting, sweep=sweep) for _ in range(n)]  # fmt: skip

    groups = {"mid-naive": runs("mid", "naive", "gap", 3), "mid-naive_lr": runs("mid", "naive lr=0.01", "gap"),
              "world-naive_lr": runs("world", "naive lr=0.01", "gap"), "naive (paper)": runs("world", "naive", "paper"),
              "naive (far)": runs("far", "naive", "far"), "stop_grad (far)": runs("far", "stop_grad", "far")}  # fmt: skip
    errors = {"world": 0.12, "mid": 0.15, "far": 0.19}
    regimes = by_vlm(groups, errors)
    assert list(regimes) == ["world", "mid", "far"]
    assert sorted(regimes["mid"]) == ["naive", "naive lr=0.01"] and len(regimes["mid"]["naive"]) == 3
    assert sorted(regimes["world"]) == ["naive", "naive lr=0.01"]
    lines = side_by_side(groups, errors).splitlines()
    assert lines[2].startswith("| setting | world (K/V error 0.120; gap, paper): seeds |")
    assert (
        "| mid (K/V error 0.150; gap): seeds |" in lines[2]
        and "| far (K/V error 0.190; far): seeds |" in lines[2]
    )
    stop_grad = next(line for line in lines if line.startswith("| stop_grad |"))
    assert stop_grad.startswith("| stop_grad |" + " – |" * 14 + " 1 | 0.50 [")  # 7 columns a VLM
    # two rows of one VLM at one setting (a swept key that is not a strategy option) stay apart
    twins = {"naive lr=1": runs("world", "naive", "s"), "naive lr=2": runs("world", "naive", "s")}
    assert sorted(by_vlm(twins, {})["world"]) == ["naive lr=1", "naive lr=2"]


def test_side_by_side_intervals_pool_episodes_and_spread_seeds():
    """Episode rates pool every episode of a row's seeds (Wilson); retention, one number per trial, takes its
    interval from the seeds (Student t: with 3 seeds the half-width is 4.30 standard errors)."""
    from kinsul.sweeps.plots import TrialRun
    from kinsul.sweeps.report import _at_target, _pooled_ci, _seeds_ci

    runs = [TrialRun({"eval/success_heldout": p, "eval/success_heldout_n": 40.0}) for p in (0.2, 0.3, 0.4)]
    assert _pooled_ci(runs, key="eval/success_heldout") == "0.30 [0.23, 0.39] (n=120)"
    assert _pooled_ci(runs, key="eval/language_following") == "–"  # no such episodes logged
    assert _seeds_ci([0.80, 0.82, 0.81]) == "0.81 [0.79, 0.83]"
    assert _seeds_ci([0.0, 0.3, 0.1]) == "0.13 [0.00, 0.51]"  # a retention is never below 0
    assert _seeds_ci([0.5, None]) == "0.50"  # one seed: no interval
    assert _seeds_ci([]) == "–"
    # steps to the target: over the seeds that reached it (t interval), the count saying how many did
    steps = "speed/steps_to_success"
    three = [TrialRun({steps: v}) for v in (1000.0, 1500.0, 2000.0)]
    assert _at_target(three, steps) == "3/3: 1,500 [258, 2,742]"
    one_missed = [TrialRun({steps: 1500.0}), TrialRun({steps: 1750.0}), TrialRun({})]
    assert _at_target(one_missed, steps) == "2/3: 1,625 [37, 3,213]"
    assert _at_target([TrialRun({}), TrialRun({})], steps) == "0/2"
    assert _at_target([], steps) == "–"


def test_dry_run_lists_every_point_with_its_run_name_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from kinsul.cli import main

    preset = write_preset(tmp_path, grid="{strategy.name: [naive, ki], seed: [0, 1]}")
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", preset, "--dry-run"]) in (0, None)
    out = capsys.readouterr().out
    assert "4 grid points" in out
    for run in ("mini-naive-s0", "mini-ki-s0", "mini-naive-s1", "mini-ki-s1"):
        assert run in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.yaml"]  # no study, no MLflow store, no runs
    bad = write_preset(tmp_path, grid="{strategy.name: [naive, kii], seed: [0]}")
    assert main(["sweep", bad, "--dry-run"]) == 2  # every point validated first
    assert "unknown strategy 'kii'" in capsys.readouterr().err


def test_each_grid_point_is_validated_as_a_whole(tmp_path):
    """A plugin's option swept under that plugin: each value fits beside the point's strategy (it was checked
    alone against the preset's default strategy and refused); a point that does not fit is named."""
    spec = load_sweep(
        write_preset(tmp_path, "{strategy.name: [topk], strategy.options.k: [1, 2], seed: [0]}")
    )
    assert [p["strategy.options.k"] for p in spec.points()] == [1, 2]
    with pytest.raises(ConfigError, match=r"strategy\.options\.k.*at grid point strategy\.name=naive"):
        load_sweep(write_preset(tmp_path, "{strategy.name: [naive, topk], strategy.options.k: [1]}"))


@pytest.mark.parametrize(
    "section, error",
    [
        (
            "grid: {strategy: [{name: ki}, {name: topk, options: {k: 1}}]}",
            "config key 'sweep.grid.strategy': got {'name': 'ki'}, expected a number, text",
        ),
        ("grid: {seed: [0]}\n  variants: {ki: {strategy.name: ki, seed: 1}}", "sweep.variants.ki.seed"),
        ("variants: {'a b': {strategy.name: ki}}", "sweep.variants.a b"),
        ("variants: {ki: ki}", "sweep.variants.ki"),
        ("variants: {ki: {strategy.name: kii}}", "unknown strategy 'kii'.*at grid point variant=ki"),
    ],
)
def test_a_grid_value_optuna_cannot_hold_is_refused_up_front_in_one_line(tmp_path, capsys, section, error):
    preset = tmp_path / "bad.yaml"
    preset.write_text(f"base: micro\nsweep:\n  {section}\n  storage: sqlite:///{tmp_path}/optuna.db\n")
    assert main(["sweep", str(preset), "--dry-run"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(error, err[0]), err
    assert main(["sweep", str(preset)]) == 2  # the sweep itself too, before any store exists
    assert not (tmp_path / "optuna.db").exists()


def test_variants_cross_the_grid_with_their_own_keys_and_names(tmp_path):
    preset = tmp_path / "v.yaml"
    preset.write_text("""base: micro
sweep:
  variants:
    ki: {strategy.name: ki}
    half: {strategy: {name: grad_scale, options: {kv_alpha: 0.5}}}
  grid: {seed: [0, 1]}
""")
    spec = load_sweep(str(preset))
    assert spec.points() == [{"variant": v, "seed": s} for v in ("ki", "half") for s in (0, 1)]
    assert spec.overrides({"variant": "half", "seed": 1}) == [
        "strategy.name=grad_scale", "strategy.options.kv_alpha=0.5", "seed=1"]  # fmt: skip
    assert child_name("v", {"variant": "half", "seed": 1}, 3, True) == "v-half-s1"


def test_paths_in_a_preset_resolve_against_the_presets_folder(tmp_path, monkeypatch):
    """base:, reference: and input paths (a VLM folder, a VQA folder) written in a preset are read from its
    folder, whatever the working folder; outputs stay in the working folder."""
    study = tmp_path / "study"
    (study / "sub").mkdir(parents=True)
    (study / "ends.yaml").write_text("base: micro\nsweep: {grid: {strategy.name: [naive], seed: [0]}}\n")
    (study / "sub" / "inner.yaml").write_text("""base: ../ends.yaml
model: {pretrained_path: ../my_vlm}
data: {vqa_path: vqa}
sweep:
  grid: {strategy.name: [naive], strategy.options.backbone_lr_scale: [0.1], seed: [0]}
  reference: {../ends.yaml: [naive]}
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../study/sub/inner.yaml")
    assert Path(cfg.model.pretrained_path).resolve() == study / "my_vlm"
    assert Path(cfg.data.vqa_path).resolve() == study / "sub" / "vqa"
    assert cfg.trainer.runs_dir == "runs" and cfg.data.root == "data"  # outputs: the working folder
    spec = load_sweep("../study/sub/inner.yaml")
    assert [Path(k).resolve() for k in spec.reference] == [study / "ends.yaml"]
    assert (
        load_config("../study/sub/inner.yaml", ["model.pretrained_path=cli_vlm"]).model.pretrained_path
        == "cli_vlm"
    )
