import dataclasses
import math

import pytest
import torch
from conftest import micro_train_config
from mlflow.tracking import MlflowClient

from kinsul.cli import main
from kinsul.data.tensors import VLMTensors
from kinsul.evaluation.retention import retention
from kinsul.models.build import build_vla
from kinsul.runs.assembly import data_spec, make_tokenizer
from kinsul.runs.pretrained import SHIPPED_DIR
from kinsul.training.train import train


@pytest.fixture(scope="module")
def trained_run(micro_root):
    return train(
        micro_train_config(micro_root, "strategy.name=ki", "trainer.run_name=eval-me"), progress=False
    )


def test_eval_prints_table_and_logs_to_the_run(trained_run, micro_root, capsys):
    args = ["eval", str(trained_run), "eval.episodes=1", "eval.latency_repeats=1", "eval.batch=3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for key in ("eval/success", "eval/success_heldout", "eval/language_following", "eval/retention",
                "val/action_mse", "val/action_mse_heldout",
                "speed/chunk_ms_flow", "speed/chunk_ms_fast"):  # fmt: skip
        assert key in out, key
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    run = client.get_run((trained_run / "mlflow_run_id").read_text().strip())
    assert "eval/success" in run.data.metrics and run.data.metrics["speed/backbone_passes_flow"] == 1.0
    # the smoke preset's VLM answers some probe questions: retention is a number that strategies move
    metrics = run.data.metrics
    # where the trial's time went: training's phases (from training) and the evaluation's
    for phase in ("total", "steps", "validation", "curve", "checkpoint"):
        assert metrics[f"time/train_{phase}_s"] >= 0, phase
    assert metrics["time/train_steps_s"] < metrics["time/train_total_s"] and metrics["time/train_step_ms"] > 0
    assert metrics["time/eval_total_s"] >= metrics["time/eval_rollouts_s"] > 0
    assert metrics["eval/probe_acc_pretrained"] > 0 and math.isfinite(metrics["eval/retention"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "eval")]
    assert "eval/success_by_concept.png" in artifacts and "eval/metrics.json" in artifacts
    assert any(a.endswith(".gif") for a in artifacts)


def test_an_earlier_checkpoint_is_logged_where_mlflow_summarises_it(trained_run, micro_root):
    """Evaluating a checkpoint from before the last curve point: its eval/success must be MLflow's summary value
    (the highest step's), so the UI and a plain get_run show the evaluation, not the success curve's last point."""
    from kinsul.evaluation.evaluate import evaluate

    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt["global_step"] = 0
    early = trained_run / "checkpoints" / "early.ckpt"
    torch.save(ckpt, early)
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    run_id = (trained_run / "mlflow_run_id").read_text().strip()
    curve_end = max(m.step for m in client.get_metric_history(run_id, "eval/success"))
    assert curve_end > 0
    try:
        metrics, _ = evaluate(early, ["eval.episodes=1", "eval.latency_repeats=1"])
    finally:
        early.unlink()
    # the curve logs eval/success, only the evaluation eval/success_heldout
    for key in ("eval/success", "eval/success_heldout"):
        newest = max(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        assert newest.step >= curve_end and newest.value == metrics[key]
        assert client.get_run(run_id).data.metrics[key] == metrics[key]


def test_a_checkpoint_scores_the_same_whatever_the_process_rng_state(trained_run):
    from kinsul.evaluation.evaluate import evaluate

    overrides = ["eval.episodes=1", "eval.videos=1", "eval.probe_samples=8", "eval.latency_repeats=1"]
    scores, videos = [], []
    for state in (1, 2):  # e.g. a sweep worker after an uninterrupted vs a resumed trial
        torch.manual_seed(state)
        metrics, _ = evaluate(trained_run, overrides, log=False)
        timings = ("speed/", "time/")  # these vary from run to run
        scores.append({k: v for k, v in metrics.items() if not k.startswith(timings)})
        videos.append({p.name: p.read_bytes() for p in sorted((trained_run / "eval").glob("*.gif"))})
    assert scores[0] == pytest.approx(scores[1], rel=0, abs=0, nan_ok=True)
    assert videos[0] and videos[0] == videos[1]  # the rolled-out trajectories themselves


def test_eval_rejects_a_world_the_checkpoint_does_not_fit(trained_run, capsys):
    assert main(["eval", str(trained_run), "world.image_size=32"]) == 2
    assert "image_size: model 64 vs the evaluation world 32" in capsys.readouterr().err
    assert main(["eval", str(trained_run.parent / "nope")]) == 2


def test_retention_is_one_for_the_pretrained_vlm_and_drops_for_one_that_lost_knowledge(micro_data):
    cfg, _, vlm = micro_data
    tok = make_tokenizer(cfg)
    shipped = next(p for p in SHIPPED_DIR.iterdir() if p.is_dir())
    model_cfg = dataclasses.replace(cfg.model, size="tiny", pretrained_path=str(shipped))
    a = build_vla(model_cfg, tok, data_spec(cfg), with_expert=False)
    b = build_vla(model_cfg, tok, data_spec(cfg), with_expert=False)
    probe = VLMTensors.from_dataset(vlm["train"], tok, cfg.model.max_text_len)
    metrics = retention(a, b, probe)
    assert metrics["eval/probe_acc_pretrained"] > 0
    assert metrics["eval/retention"] == 1.0
    # knowledge lost: the decoder's later layers re-initialised, as a destructive fine-tune would leave them
    damaged = build_vla(model_cfg, tok, data_spec(cfg), with_expert=False)
    with torch.no_grad():
        for layer in damaged.lm.layers[len(damaged.lm.layers) // 2 :]:
            for p in layer.parameters():
                p.normal_(0.0, 0.02)
    lost = retention(damaged, b, probe)
    assert lost["eval/retention"] < 0.5 * metrics["eval/retention"]


@pytest.mark.parametrize("which", ["last", "best"])
def test_a_run_folder_is_evaluated_at_the_checkpoint_eval_checkpoint_names(trained_run, monkeypatch, which):
    """The policy at the budget (last.ckpt) by default: best.ckpt is chosen by an offline proxy that can pick an
    earlier, worse policy; eval.checkpoint=best asks for it."""
    from kinsul.evaluation import evaluate as evaluate_lib

    read = []

    def spy(path):
        read.append(path.name)
        raise KeyboardInterrupt  # enough: the choice is made before any rollout

    monkeypatch.setattr(evaluate_lib, "load_checkpoint", spy)
    overrides = [] if which == "last" else ["eval.checkpoint=best"]
    with pytest.raises(KeyboardInterrupt):
        evaluate_lib.evaluate(trained_run, overrides)
    assert read == [f"{which}.ckpt"]


def test_an_unknown_eval_checkpoint_is_refused_naming_the_field(trained_run, capsys):
    assert main(["eval", str(trained_run), "eval.checkpoint=newest"]) == 2
    assert "eval.checkpoint" in capsys.readouterr().err
