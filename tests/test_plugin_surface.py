"""What a plugin author sees without reading the source: the listing verb, the effective strategy, a strategy
that checks its options against the built model (one line, exit 2, before any step), and the trainable
parameter counts per group in MLflow."""

from pathlib import Path

from conftest import micro_train_config as micro

from kinsul.cli import main
from kinsul.training.train import train

TOPK = '''
from dataclasses import dataclass

from kinsul.strategies import AxisStrategy, ParamGroup


@dataclass
class TopK(AxisStrategy):
    """Stop-gradient like ki; only the top k decoder layers of the backbone train (by the FAST loss)."""

    k: int = 1

    def setup(self, vla):
        layers = len(vla.lm.layers)
        if not 1 <= self.k <= layers:
            raise ValueError(f"strategy.options.k={self.k}: this backbone has {layers} decoder layers")

    def param_groups(self, vla):
        top = [p for layer in vla.lm.layers[-self.k:] for p in layer.parameters()]
        return [ParamGroup("expert", list(vla.expert.parameters())), ParamGroup("top_layers", top)]


def topk(options=None):
    return TopK(name="topk", description="top-k layers learn FAST tokens", loss_weights={"fm": 1.0, "fast": 1.0},
                kv_alpha=0.0, **dict(options or {}))
'''


def _install(root: Path) -> None:
    info = root / "topk_plugin-0.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: topk-plugin\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[kinsul.strategies]\ntopk = topk_plugin:topk\n")
    (root / "topk_plugin.py").write_text(TOPK)


def test_the_listing_shows_packages_versions_defaults_and_options(tmp_path, monkeypatch, capsys):
    _install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["strategies"]) in (0, None)
    out = capsys.readouterr().out
    ki = next(line for line in out.splitlines() if line.startswith("ki "))
    assert "kinsul " in ki and "fm 1, fast 1, vlm 1" in ki and "0.25" in ki
    assert "unfreeze_at: int = 1000" in out
    topk = next(line for line in out.splitlines() if line.startswith("topk "))
    assert "topk-plugin 0.2" in topk
    assert "k: int = 1" in out


def test_config_shows_the_effective_strategy_not_only_the_overrides(capsys):
    assert main(["config", "strategy.name=ki", "strategy.loss_weights.fast=0.5"]) in (0, None)
    out = capsys.readouterr().out
    assert "loss_weights:\n    fast: 0.5" in out or "fast: 0.5" in out  # the override, as given
    for line in ("#   loss_weights.fm: 1", "#   loss_weights.fast: 0.5", "#   loss_weights.vlm: 1",
                 "#   vlm_ratio: 0.25", "#   options.kv_alpha: 0.0"):  # fmt: skip
        assert line in out, line


def test_an_option_that_does_not_fit_the_model_is_one_line_before_any_step(
    micro_root, tmp_path, monkeypatch, capsys
):
    _install(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    args = ["train", "micro", f"data.root={micro_root / 'data'}", f"trainer.runs_dir={tmp_path / 'runs'}",
            "tracking.enabled=false", "strategy.name=topk", "strategy.options.k=3", "trainer.run_name=k3"]  # fmt: skip
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsul")]
    assert len(err) == 1 and "does not fit this model" in err[0] and "has 2 decoder layers" in err[0], err
    assert not (tmp_path / "runs" / "k3").exists()  # nothing trained, no run folder left


def test_trainable_counts_per_group_are_printed_and_logged(micro_root, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from kinsul import tracking

    _install(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    run = train(micro(micro_root, "strategy.name=topk", "strategy.options.k=1", "trainer.max_steps=2",
                      "trainer.curve_every=0", "trainer.run_name=counts"), progress=False)  # fmt: skip
    assert "strategy 'topk' trains expert" in capsys.readouterr().out
    params = (
        MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}").get_run(tracking.run_id_of(run)).data.params
    )
    expert, top, frozen = (int(params[f"trainable.{g}"]) for g in ("expert", "top_layers", "frozen"))
    assert expert > 0 and 0 < top < frozen
    assert params["effective.loss_weights.fast"] == "1" and params["effective.options.k"] == "1"
