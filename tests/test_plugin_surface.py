"""What a plugin author sees without reading the source: the listing verb, the effective strategy, a strategy
that checks its options against the built model (one line, exit 2, before any step), and the trainable
parameter counts per group in MLflow."""

from pathlib import Path

from conftest import micro_train_config as micro

from kinsul.cli import main
from kinsul.training.train import train

REPO = Path(__file__).resolve().parents[1]
# the tutorial's sweep (docs/write-a-strategy.md)
TOPK_PRESET = REPO / "tests" / "plugins" / "kinsul_topk" / "topk.yaml"


def test_the_listing_shows_packages_versions_defaults_and_options(capsys):
    assert main(["strategies"]) in (0, None)
    out = capsys.readouterr().out
    ki = next(line for line in out.splitlines() if line.startswith("ki "))
    assert "kinsul " in ki and "fm 1, fast 1, vlm 1" in ki and "0.25" in ki
    assert "unfreeze_at: int = 1000" in out
    topk = next(line for line in out.splitlines() if line.startswith("topk "))
    assert "kinsul-topk 0.1.0" in topk and "fm 1, fast 1, l2sp 0.1" in topk  # the shipped example plugin
    assert "k: int = 1" in out
    assert any(line.startswith("l2sp ") and "kinsul_topk:L2SP" in line for line in out.splitlines())


def test_config_shows_the_effective_strategy_not_only_the_overrides(capsys):
    assert main(["config", "strategy.name=ki", "strategy.loss_weights.fast=0.5"]) in (0, None)
    out = capsys.readouterr().out
    assert "loss_weights:\n    fast: 0.5" in out or "fast: 0.5" in out  # the override, as given
    for line in ("#   loss_weights.fm: 1", "#   loss_weights.fast: 0.5", "#   loss_weights.vlm: 1",
                 "#   vlm_ratio: 0.25", "#   options.kv_alpha: 0.0"):  # fmt: skip
        assert line in out, line


def test_an_option_that_does_not_fit_the_model_is_one_line_before_any_step(micro_root, tmp_path, capsys):
    args = ["train", "micro", f"data.root={micro_root / 'data'}", f"trainer.runs_dir={tmp_path / 'runs'}",
            "tracking.enabled=false", "strategy.name=topk", "strategy.options.k=3", "trainer.run_name=k3"]  # fmt: skip
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsul")]
    assert len(err) == 1 and "does not fit this model" in err[0] and "has 2 decoder layers" in err[0], err
    assert not (tmp_path / "runs" / "k3").exists()  # nothing trained, no run folder left


def test_a_sweep_point_that_does_not_fit_the_model_stops_the_sweep_before_any_trial(tmp_path, capsys):
    """The same check for every point of a sweep, on the model built on the meta device: the sweep stops at once,
    naming the point, instead of failing that point's trials while the others train."""
    preset = tmp_path / "k.yaml"
    preset.write_text(f"""base: micro
sweep:
  grid: {{strategy.name: [topk], strategy.options.k: [1, 3], seed: [0, 1]}}
  storage: sqlite:///{tmp_path / "optuna.db"}
""")
    args = ["sweep", str(preset), f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"trainer.runs_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}"]  # fmt: skip
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsul")]
    assert len(err) == 1 and "has 2 decoder layers" in err[0] and "strategy.options.k=3" in err[0], err
    assert "no trial was started" in err[0]
    # no study, no MLflow store, no data, no run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.yaml"]


def test_trainable_counts_per_group_are_printed_and_logged(micro_root, capsys):
    from mlflow.tracking import MlflowClient

    from kinsul import tracking

    run = train(micro(micro_root, "strategy.name=topk", "strategy.options.k=1", "trainer.max_steps=2",
                      "trainer.curve_every=0", "trainer.run_name=counts"), progress=False)  # fmt: skip
    assert "strategy 'topk' trains expert" in capsys.readouterr().out
    logged = MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}").get_run(tracking.run_id_of(run)).data
    params, tags = logged.params, logged.tags
    assert tags["kinsul.strategy.package"] == "kinsul-topk 0.1.0"  # each plugin it used, with its version
    assert tags["kinsul.loss_term.l2sp.package"] == "kinsul-topk 0.1.0"
    assert tags["kinsul.loss_term.fast.package"].startswith("kinsul ")
    expert, top, frozen = (int(params[f"trainable.{g}"]) for g in ("expert", "top_layers", "frozen"))
    assert expert > 0 and 0 < top < frozen
    assert params["effective.loss_weights.fast"] == "1" and params["effective.options.k"] == "1"


def test_one_preset_sweeps_a_plugins_options_beside_a_builtin(micro_root, tmp_path, monkeypatch, capsys):
    """The tutorial's preset: named variants (ki; topk at k 1 and 2) crossed with the seeds, one row and one run
    per variant, and retention a number on the smoke preset (its VLM answers some probe questions)."""
    from kinsul.sweeps.report import report
    from kinsul.sweeps.run import run_sweep

    monkeypatch.chdir(tmp_path)  # the preset's stores are relative to the working folder
    assert main(["sweep", str(TOPK_PRESET), "--dry-run"]) in (0, None)
    listing = capsys.readouterr().out
    assert "topk-top2-s0" in listing and "strategy.name=topk  strategy.options.k=2  seed=0" in listing
    overrides = [f"data.root={micro_root / 'data'}", "trainer.max_steps=2", "trainer.curve_every=0"]
    study = run_sweep(str(TOPK_PRESET), overrides)
    done = sorted(t.params["variant"] for t in study.trials if t.state.name == "COMPLETE")
    assert done == ["ki", "top1", "top2"]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["topk-ki-s0", "topk-top1-s0", "topk-top2-s0"]
    lines = report(str(TOPK_PRESET), overrides).splitlines()
    retention = lines[0].split(" | ").index("retention")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines[2:]}
    assert sorted(rows) == ["ki", "top1", "top2"]
    for name, cells in rows.items():
        assert cells[retention][0].isdigit(), (name, cells[retention])  # a number, not "–"
    # each row's setting, read back from what the logger wrote (options flattened one param each): the key
    # the regimes side by side and the domain-gap figure compare rows of different VLMs at
    from kinsul.config.loader import load_config
    from kinsul.sweeps.report import collect
    from kinsul.sweeps.spec import load_sweep

    groups = collect(str(TOPK_PRESET), load_config(str(TOPK_PRESET), overrides), load_sweep(str(TOPK_PRESET)))
    settings = {label: {run.setting for run in runs} for label, runs in groups.items()}
    assert settings == {"ki": {"ki"}, "top1": {"topk k=1"}, "top2": {"topk k=2"}}
