"""End to end: every registered strategy trains, checkpoints, resumes exactly; runs land in a real MLflow store."""

import pytest
import torch
from conftest import micro_train_config as micro
from mlflow.tracking import MlflowClient

from kinsul.cli import main
from kinsul.config import ConfigError
from kinsul.runs.checkpoints import NonFiniteLossError
from kinsul.strategies import available
from kinsul.training import module as module_lib
from kinsul.training.train import train

REAL_STEP = module_lib.VLAModule.training_step


def record_losses(monkeypatch, crash_at=None):
    seen = []
    real = REAL_STEP

    def step(self, batch, i):
        if crash_at is not None and self.global_step == crash_at:
            raise RuntimeError("simulated crash")
        loss = real(self, batch, i)
        seen.append((self.global_step, round(loss.item(), 6)))
        return loss

    monkeypatch.setattr(module_lib.VLAModule, "training_step", step)
    return seen


@pytest.mark.parametrize("strategy", sorted(available()))
def test_contract_train_save_resume_matches_uninterrupted(strategy, micro_root, monkeypatch):
    full = record_losses(monkeypatch)
    train(micro(micro_root, f"strategy.name={strategy}", f"trainer.run_name={strategy}-full"), progress=False)
    assert [s for s, _ in full] == [0, 1, 2, 3]

    cfg = micro(micro_root, f"strategy.name={strategy}", f"trainer.run_name={strategy}-resumed")
    partial = record_losses(monkeypatch, crash_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, progress=False)
    assert [s for s, _ in partial] == [0, 1]
    resumed = record_losses(monkeypatch)
    run_dir = train(cfg, resume=True, progress=False)
    assert [s for s, _ in resumed] == [2, 3]
    assert [s for s, _ in partial + resumed] == [s for s, _ in full]
    assert [v for _, v in partial + resumed] == pytest.approx([v for _, v in full], rel=1e-4, abs=1e-5)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (
        run_dir / "checkpoints" / "best.ckpt"
    ).is_file()
    assert (run_dir / "config.yaml").is_file()


def test_a_run_killed_after_a_validation_resumes_with_its_best_checkpoint(micro_root, monkeypatch):
    """Killed outright (no exception checkpoint, as SIGKILL) after step 2's validation: the resumed run still
    knows that validation's best, so best.ckpt stays the one best file (not best.ckpt + a stale best-v1.ckpt)."""
    from kinsul.runs.checkpoints import ExceptionCheckpoint

    cfg = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=killed")
    monkeypatch.setattr(ExceptionCheckpoint, "on_exception", lambda *a: None)
    record_losses(monkeypatch, crash_at=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, progress=False)
    monkeypatch.undo()
    run_dir = train(cfg, resume=True, progress=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    state = next(v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert state["best_model_path"].endswith("best.ckpt") and len(state["best_k_models"]) == 1


def _backbone(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")[
        "state_dict"
    ]
    return {k: v for k, v in state.items() if k.startswith("vla.backbone.")}


def test_delayed_unfreeze_killed_and_resumed_trains_exactly_like_uninterrupted(micro_root, monkeypatch):
    """The step hook sees the trainer's global step: after a resume at step 2 the backbone is still unfrozen
    (a plugin that counted its own calls would restart at 0 and keep it frozen)."""
    opts = ["strategy.name=delayed_unfreeze", "strategy.options.unfreeze_at=1"]
    full_dir = train(micro(micro_root, *opts, "trainer.run_name=du-full"), progress=False)
    cfg = micro(micro_root, *opts, "trainer.run_name=du-resumed")
    record_losses(monkeypatch, crash_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, progress=False)
    monkeypatch.setattr(module_lib.VLAModule, "training_step", REAL_STEP)
    resumed_dir = train(cfg, resume=True, progress=False)
    full, resumed = _backbone(full_dir), _backbone(resumed_dir)
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=1e-5, atol=1e-6, msg=k)
    frozen_dir = train(micro(micro_root, "strategy.name=delayed_unfreeze", "strategy.options.unfreeze_at=9",
                             "trainer.run_name=du-never"), progress=False)  # fmt: skip
    never = _backbone(frozen_dir)
    assert any(not torch.equal(full[k], never[k]) for k in full)  # the unfrozen backbone did train


def test_run_is_logged_to_mlflow_and_read_back(micro_root):
    run_dir = train(micro(micro_root, "strategy.name=ki", "trainer.run_name=tracked"), progress=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    run = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert run.info.status == "FINISHED"
    assert run.data.tags["strategy"] == "ki" and "stop-gradient" in run.data.tags["mlflow.note.content"]
    assert run.data.tags["kinsul.role"] == "run"  # a sweep's trials are tagged "trial", its parent "parent"
    assert run.data.params["strategy.name"] == "ki" and run.data.params["model.size"] == "micro"
    for key in ("train/loss_fm", "train/loss_fast", "train/loss_vlm", "val/action_mse"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "val/action_mse")
    assert [m.step for m in history] == [1, 3]


def test_tracking_off_trains_the_same_and_logs_nothing(micro_root, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    args = ["train", "micro", f"data.root={micro_root / 'data'}", f"tracking.uri=sqlite:///{db}",
            f"trainer.runs_dir={tmp_path / 'runs'}", "trainer.run_name=untracked", "tracking.enabled=false"]  # fmt: skip
    assert main(args) == 0
    assert "MLflow: off" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "untracked"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "mlflow_run_id").exists()
    assert main(["eval", str(run_dir), "eval.episodes=1", "eval.videos=0", "eval.probe_samples=8"]) == 0
    assert not db.exists() and not (tmp_path / "mlruns").exists()  # no store was created, even by eval


def test_steps_to_target_records_the_first_validation_that_reaches_it(micro_root):
    run_dir = train(micro(micro_root, "strategy.name=frozen", "trainer.run_name=speed",
                          "trainer.velocity_mse_target=1000"), progress=False)  # fmt: skip
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    run = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert run.data.metrics["speed/steps_to_target"] == 2.0  # the first validation, after 2 steps
    assert run.data.metrics["speed/seconds_to_target"] > 0
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    # artifacts live beside the sqlite store, not in ./mlruns of the folder the process happened to run in
    assert run.info.artifact_uri.startswith((micro_root / "mlartifacts").resolve().as_uri())


def test_bad_inputs_fail_before_training(micro_root, capsys):
    with pytest.raises(
        ConfigError, match="'strategy.loss_weights.fast'.*strategy 'naive''s terms \\['fm'\\]"
    ):
        train(micro(micro_root, "strategy.name=naive", "strategy.loss_weights={fast: 1.0}"), progress=False)
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        train(micro(micro_root, "strategy.name=ki", "trainer.batch_size=1"), progress=False)
    assert main(["train", "micro", "strategy.name=kii", f"data.root={micro_root / 'data'}"]) == 2
    assert "did you mean 'ki'" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(micro_root, monkeypatch):
    cfg = micro(micro_root, "strategy.name=naive", "trainer.run_name=nan")
    real = module_lib.VLAModule.compute_losses

    def poisoned(self, batch):
        losses = real(self, batch)
        if self.global_step == 3:
            losses["fm"] = losses["fm"] * float("nan")
        return losses

    monkeypatch.setattr(module_lib.VLAModule, "compute_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match="loss term 'fm' is nan at step 3"):
        train(cfg, progress=False)
    import torch

    last = torch.load(micro_root / "runs" / "nan" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2  # the step-2 checkpoint, not overwritten by the failing step


def test_success_curve_is_logged_against_steps_and_survives_resume(micro_root):
    """eval/success from the fixed rollout set at step 0 and every curve_every steps; a target of 0 is reached
    at the curve's origin, so steps/frames/seconds to success are logged there; resume keeps the curve."""
    cfg = micro(micro_root, "strategy.name=ki", "trainer.run_name=curve", "trainer.success_target=0.0")
    run_dir = train(cfg, progress=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    history = client.get_metric_history(run_id, "eval/success")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 2, 4]
    for family in ("reach", "push"):  # the headline families (eval.headline_tasks) make the curve
        assert len(client.get_metric_history(run_id, f"eval/success_{family}")) == 3
    assert not client.get_metric_history(run_id, "eval/success_pick_place")
    metrics = client.get_run(run_id).data.metrics
    assert metrics["speed/steps_to_success"] == 0.0 and metrics["speed/frames_to_success"] == 0.0
    assert "val/velocity_mse" in metrics
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (curve,) = [v for k, v in state.items() if k.startswith("SuccessCurve")]
    assert [s for s, _ in curve["points"]] == [0, 2, 4] and curve["reached_at"] == 0


def test_a_target_that_is_never_reached_logs_no_speed(micro_root):
    run_dir = train(micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=curve_unreached",
                          "trainer.success_target=1.0", "eval.headline_tasks=[reach]"), progress=False)  # fmt: skip
    client = MlflowClient(tracking_uri=f"sqlite:///{micro_root / 'mlflow.db'}")
    metrics = client.get_run((run_dir / "mlflow_run_id").read_text().strip()).data.metrics
    # an untrained micro policy does not reach in 4 steps (the world's own check, not a mock)
    assert metrics["eval/success_reach"] < 1.0 and "speed/steps_to_success" not in metrics
    assert metrics["eval/success"] == metrics["eval/success_reach"]  # the headline is reach alone


def test_a_weighted_loss_that_overflows_stops_and_keeps_the_good_checkpoint(micro_root, monkeypatch):
    """Each term finite, the weighted total not (float32 overflow): stopped before backward, last.ckpt intact."""
    cfg = micro(
        micro_root, "strategy.name=naive", "trainer.run_name=overflow", "strategy.loss_weights={fm: 10.0}"
    )
    real = module_lib.VLAModule.compute_losses

    def huge(self, batch):
        losses = real(self, batch)
        if self.global_step == 3:
            losses["fm"] = losses["fm"] * 0 + 3e38  # finite in float32; times 10 it is not
        return losses

    monkeypatch.setattr(module_lib.VLAModule, "compute_losses", huge)
    last = micro_root / "runs" / "overflow" / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteLossError, match="the weighted loss is inf at step 3"):
        train(cfg, progress=False)
    before = last.read_bytes()
    assert torch.load(last, weights_only=True)["global_step"] == 2
    monkeypatch.setattr(module_lib.VLAModule, "compute_losses", real)
    assert last.read_bytes() == before


def test_loss_weights_are_checked_at_config_load(micro_root):
    for bad in ("nan", "-1", "1e39", "inf"):
        with pytest.raises(ConfigError, match="strategy.loss_weights.fm"):
            micro(micro_root, f"strategy.loss_weights.fm={bad}")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    """torch.load(weights_only=True): the pickle's os.system call never runs; one line names the file."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"global_step": 1, "state_dict": Evil()}, ckpt)  # a zip checkpoint, as Lightning writes
    assert main(["eval", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "CheckpointError" in err and str(ckpt) in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_resume_refuses_another_configuration_but_takes_a_new_budget(micro_root):
    cfg = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=guarded", "trainer.curve_every=0")
    run_dir = train(cfg, progress=False)
    saved = (run_dir / "config.yaml").read_text()
    other = micro(micro_root, "strategy.name=naive", "trainer.run_name=guarded", "trainer.curve_every=0")
    with pytest.raises(ConfigError, match=r"'strategy.name'.*stop_grad -> naive"):
        train(other, resume=True, progress=False)
    assert (run_dir / "config.yaml").read_text() == saved
    longer = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=guarded", "trainer.curve_every=0",
                   "trainer.max_steps=6")  # fmt: skip
    train(longer, resume=True, progress=False)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_a_failed_start_leaves_no_run_folder(micro_root):
    cfg = micro(
        micro_root, "strategy.name=stop_grad", "trainer.run_name=failed", "model.pretrained_path=/nowhere"
    )
    with pytest.raises(Exception, match="nowhere"):
        train(cfg, progress=False)
    assert not (micro_root / "runs" / "failed").exists()


def test_a_data_error_inside_fit_keeps_the_good_checkpoint_and_leaves_no_new_folder(micro_root, monkeypatch):
    from kinsul.data.store import DatasetError
    from kinsul.training.datamodule import KinsulDataModule

    done = train(micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=dataerr"), progress=False)
    last = done / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def truncated(self, stage=None):
        raise DatasetError("cached file 'x.arrow' is truncated")

    monkeypatch.setattr(KinsulDataModule, "setup", truncated)
    resumed = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=dataerr", "trainer.max_steps=6")
    with pytest.raises(DatasetError):
        train(resumed, resume=True, progress=False)
    assert last.read_bytes() == before  # not replaced by the untrained weights of a step-0 save
    with pytest.raises(DatasetError):
        train(micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=dataerr2"), progress=False)
    assert not (micro_root / "runs" / "dataerr2").exists()


def test_an_unreachable_tracking_server_fails_in_seconds_naming_the_key(micro_root, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main(["train", "micro", f"data.root={micro_root / 'data'}", f"trainer.runs_dir={micro_root / 'runs'}",
                 "trainer.run_name=unreachable", f"tracking.uri=http://127.0.0.1:{port}"])  # fmt: skip
    assert code == 2 and time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"'tracking.uri': the MLflow server http://127.0.0.1:{port} did not answer" in err
    assert not (micro_root / "runs" / "unreachable").exists()


def test_a_frozen_backbone_stays_in_eval_mode_through_lightnings_validation_loop(micro_root):
    """Lightning puts the whole model back in train mode after each validation; the frozen backbone must return
    to eval mode before the next training step (dropout, norms in eval behaviour)."""
    import lightning as L

    seen = []

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, i):
            seen.append((trainer.global_step, module.vla.backbone.training, module.vla.expert.training))

    train(micro(micro_root, "strategy.name=frozen", "trainer.run_name=frozen-modes"), progress=False,
          callbacks=[Watch()])  # fmt: skip
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]  # validation ran at step 2, between these
    assert all(not backbone and expert for _, backbone, expert in seen)
