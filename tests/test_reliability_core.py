"""Nothing lost, nothing hijacked: a failed save stops the run, run folders stay where they belong, a plugin
cannot replace a built-in, a NaN gradient never reaches the weights, and signals end with the conventional codes."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import micro_train_config as micro

from kinsul.cli import main
from kinsul.config import ConfigError, load_config
from kinsul.runs import checkpoints as ckpt_lib
from kinsul.runs.checkpoints import (
    CheckpointSaveError,
    NonFiniteGradientError,
    first_non_finite,
    load_checkpoint,
)
from kinsul.strategies import create
from kinsul.training import module as module_lib
from kinsul.training.train import train


def test_a_failed_save_stops_the_run_naming_the_file_and_leaves_the_last_good_checkpoint(
    micro_root, monkeypatch
):
    cfg = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=diskfull", "trainer.curve_every=0")
    real, calls = os.fsync, []

    def full_disk(fd):  # the first checkpoint (step 2) lands; the disk is full from then on
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(ckpt_lib.os, "fsync", full_disk)
    with pytest.raises(CheckpointSaveError, match=r"could not write checkpoint '.*diskfull/checkpoints/.*\.ckpt' "
                       r"\(No space left on device; [\d,.]+ MiB free there\)"):  # fmt: skip
        train(cfg, progress=False)
    folder = micro_root / "runs" / "diskfull" / "checkpoints"
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]  # no partial file anywhere
    last = load_checkpoint(folder / "last.ckpt")
    assert last["global_step"] == 2 and first_non_finite(last["state_dict"]) is None


class _InterruptsWhilePickled:
    """Sends the process a signal while torch.save is half-way through writing the checkpoint's zip."""

    def __init__(self, sig):
        self.sig = sig

    def __reduce__(self):
        signal.raise_signal(self.sig)
        return (int, (7,))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_middle_of_a_checkpoint_write_lands_after_the_file_is_whole(sig, tmp_path):
    got = []
    previous = signal.signal(
        signal.SIGTERM, lambda number, frame: got.append(number)
    )  # Lightning's way: a flag
    # Python's own SIGINT handler, as at a terminal: a shell's background job starts with SIGINT ignored
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        path = tmp_path / "last.ckpt"
        with pytest.raises(KeyboardInterrupt) if sig == signal.SIGINT else _no_raise():
            ckpt_lib.SafeCheckpointIO().save_checkpoint(
                {"state_dict": {"w": torch.ones(3)}, "global_step": 5, "late": _InterruptsWhilePickled(sig)},
                path,
            )
        assert sig == signal.SIGINT or got == [signal.SIGTERM]  # delivered once, after the write
        loaded = torch.load(
            path, weights_only=False
        )  # the file is the test's own; its int is built by a reduce
        assert loaded["global_step"] == 5 and loaded["late"] == 7
        assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _default_sigint() -> None:
    """In the child before exec: SIGINT at its default, so Python installs its handler (a shell's background job,
    e.g. a CI runner's, starts with SIGINT ignored, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _no_raise():
    import contextlib

    return contextlib.nullcontext()


def test_run_names_are_names_and_a_folder_kinsul_did_not_make_is_never_written(micro_root, tmp_path):
    for bad in ("../../x", "/abs", "..", "a/b", "tab\tname"):
        with pytest.raises(ConfigError, match="trainer.run_name"):
            load_config("micro", [f"trainer.run_name={bad}"])
    with pytest.raises(ConfigError, match="environment interpolation is off"):
        load_config("micro", ["trainer.run_name=${oc.env:HOME}"])
    theirs = micro_root / "runs" / "theirs"
    theirs.mkdir(parents=True)
    (theirs / "config.yaml").write_text("mine: 1\n")
    with pytest.raises(FileExistsError, match="was not made by kinsul"):
        train(micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=theirs"), progress=False)
    assert (theirs / "config.yaml").read_text() == "mine: 1\n" and sorted(
        p.name for p in theirs.iterdir()
    ) == ["config.yaml"]


def _fake_plugin(root: Path, entry_points: str, module: str) -> None:
    info = root / "shadow_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    (root / "shadow_plugin.py").write_text(module)


def test_a_plugin_cannot_replace_a_builtin_and_one_that_exits_on_import_is_named(
    tmp_path, monkeypatch, capsys
):
    _fake_plugin(tmp_path, "[kinsul.strategies]\nnaive = shadow_plugin:naive\nbroken = shadow_plugin:broken\n",
                 "import sys\nsys.exit(3)\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="'naive' is registered by more than one package: .*'kinsul'.*"
                       "'shadow-plugin'|'shadow-plugin'.*'kinsul'"):  # fmt: skip
        create("naive")
    assert main(["config", "micro", "strategy.name=naive"]) == 2
    err = capsys.readouterr().err
    assert "strategy.name=kinsul:naive" in err and "strategy.name=shadow-plugin:naive" in err
    assert len(err.strip().splitlines()) == 1
    assert create("kinsul:naive").name == "naive"  # the qualified name picks one
    assert main(["config", "micro", "strategy.name=broken"]) == 2
    assert "could not be imported: SystemExit: 3" in capsys.readouterr().err


class NanGradient(torch.autograd.Function):
    """Zero in the forward pass, NaN in the backward pass: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum() * 0.0

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("nan"))


def test_a_nan_gradient_at_step_k_never_reaches_the_weights_or_a_checkpoint(micro_root, monkeypatch, capsys):
    real = module_lib.VLAModule.compute_losses

    def poisoned(self, batch):
        losses = real(self, batch)
        if self.global_step == 3:
            losses["fm"] = losses["fm"] + NanGradient.apply(self.vla.expert.action_out.weight)
        return losses

    monkeypatch.setattr(module_lib.VLAModule, "compute_losses", poisoned)
    cfg = micro(micro_root, "strategy.name=naive", "trainer.run_name=nangrad", "trainer.max_steps=6")
    with pytest.raises(NonFiniteGradientError, match="'expert.action_out.weight' is not finite at step 3"):
        train(cfg, progress=False)
    last = load_checkpoint(micro_root / "runs" / "nangrad" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 2 and first_non_finite(last["state_dict"]) is None
    overrides = ["micro", f"data.root={micro_root / 'data'}", f"trainer.runs_dir={micro_root / 'runs'}",
                 f"tracking.uri=sqlite:///{micro_root / 'mlflow.db'}", "strategy.name=naive",
                 "trainer.run_name=nangrad2", "trainer.max_steps=6"]  # fmt: skip
    assert main(["train", *overrides]) == 3  # a distinct exit code, one line
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsul:")]
    assert len(lines) == 1 and lines[0].startswith("kinsul: NonFiniteGradientError:")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_training_with_its_exit_code_a_checkpoint_and_a_killed_run(sig, code, micro_root):
    from mlflow.tracking import MlflowClient

    name = f"signal{code}"
    run_dir = micro_root / "runs" / name
    cmd = [sys.executable, "-m", "kinsul.cli", "train", "micro", f"data.root={micro_root / 'data'}",
           f"trainer.runs_dir={micro_root / 'runs'}", f"tracking.uri=sqlite:///{micro_root / 'mlflow.db'}",
           "strategy.name=stop_grad", f"trainer.run_name={name}", "trainer.max_steps=100000", "trainer.curve_every=0",
           "trainer.val_every=100000", "trainer.checkpoint_every=2"]  # fmt: skip
    log = micro_root / f"{name}.stderr"
    # stderr to a file, not a pipe: a progress bar filling an unread pipe would block the child
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in err.strip().splitlines() if line.startswith("kinsul:")]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name} at step" in lines[0], err[-2000:]
    assert "--resume" in lines[0] and "last.ckpt" in lines[0]
    assert "Traceback" not in err
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    status = MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}").get_run(run_id).info.status
    assert status == "KILLED"
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] >= 2


def test_a_copied_run_folder_resumes_with_one_best_checkpoint_and_the_original_untouched(
    micro_root, tmp_path
):
    import shutil

    first = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=tocopy", "trainer.curve_every=0")
    original = train(first, progress=False)
    before = (original / "checkpoints" / "best.ckpt").read_bytes()
    shutil.copytree(original, tmp_path / "moved" / "tocopy")
    again = micro(micro_root, "strategy.name=stop_grad", "trainer.run_name=tocopy", "trainer.curve_every=0",
                  f"trainer.runs_dir={tmp_path / 'moved'}", "trainer.max_steps=8")  # fmt: skip
    copy = train(again, resume=True, progress=False)
    assert sorted(p.name for p in (copy / "checkpoints").glob("best*")) == ["best.ckpt"]
    assert (original / "checkpoints" / "best.ckpt").read_bytes() == before
    assert load_checkpoint(copy / "checkpoints" / "last.ckpt")["global_step"] == 8


def test_after_an_interrupt_and_resume_every_metric_is_logged_at_the_uninterrupted_runs_steps(
    micro_root, monkeypatch
):
    """A SIGINT that lands during the success curve at step 4 (after the step, before its point) leaves a
    checkpoint at step 4; the resumed run measures that point, so no history has a hole or an extra step."""
    from mlflow.tracking import MlflowClient

    from kinsul import tracking
    from kinsul.evaluation.curve import SuccessCurve
    from kinsul.runs.signals import RunInterrupted

    common = ["strategy.name=stop_grad", "trainer.max_steps=10", "trainer.val_every=3", "trainer.checkpoint_every=3",
              "trainer.curve_every=4"]  # fmt: skip
    straight = train(micro(micro_root, *common, "trainer.run_name=aligned-a"), progress=False)
    measure = SuccessCurve.measure

    def interrupted(self, trainer, pl_module, step):
        if step == 4:
            monkeypatch.setattr(SuccessCurve, "measure", measure)
            raise KeyboardInterrupt
        return measure(self, trainer, pl_module, step)

    monkeypatch.setattr(SuccessCurve, "measure", interrupted)
    cfg = micro(micro_root, *common, "trainer.run_name=aligned-b")
    with pytest.raises(RunInterrupted, match="at step 4"):
        train(cfg, progress=False)
    resumed = train(cfg, resume=True, progress=False)
    client = MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}")
    a, b = tracking.run_id_of(straight), tracking.run_id_of(resumed)
    keys = sorted(client.get_run(a).data.metrics)
    assert "eval/success" in keys and "val/velocity_mse" in keys
    for key in keys:
        steps = [sorted(m.step for m in client.get_metric_history(r, key)) for r in (a, b)]
        assert steps[0] == steps[1], key
