"""Multi-device training, exercised: Lightning DDP with 2 CPU processes over gloo, through `train()` itself.
Each rank writes what it saw and what it ended with; the test checks identical weights on both ranks, different
data per rank, the strategy's schedule in step on both, one MLflow run logged from rank 0, and a resume under
DDP that continues exactly where an uninterrupted run goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import micro_train_config
from mlflow.tracking import MlflowClient

# Lightning's DDP launcher starts rank 1 by running this script again with LOCAL_RANK set.
SCRIPT = '''
import hashlib, json, sys
from pathlib import Path

import lightning as L
import torch

from kinsul.config import load_config
from kinsul.training.train import train


def digest(module):
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode()); h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Probe(L.Callback):
    """What this rank trained on and ended with."""

    def __init__(self, out, crash_at):
        self.out, self.crash_at, self.batches, self.trainable = Path(out), crash_at, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.crash_at:  # a crash on every rank, after the checkpoint of that step
            raise RuntimeError(f"simulated crash at step {self.crash_at}")
        self.batches.append(round(float(batch.robot.actions.double().sum()), 6))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        groups = {g.name: all(p.requires_grad for p in g.params) for g in module.groups}
        self.trainable.append(groups)

    def on_train_start(self, trainer, module):
        self.backbone_start = digest(module.vla.backbone)

    def on_train_end(self, trainer, module):
        record = {"rank": trainer.global_rank, "world": trainer.world_size, "weights": digest(module.vla),
                  "backbone_moved": digest(module.vla.backbone) != self.backbone_start,
                  "batches": self.batches, "trainable": self.trainable, "step": trainer.global_step}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


out, mode, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
Path(out).mkdir(parents=True, exist_ok=True)
crash_at = int(mode.removeprefix("crash")) if mode.startswith("crash") else -1
train(load_config("micro", overrides), resume=mode == "resume", progress=False, callbacks=[Probe(out, crash_at)])
'''


def _run(tmp_path: Path, out: str, overrides: list[str], mode: str = "fresh") -> list[dict]:
    """Train under DDP in a fresh process (mode: fresh, resume, or crashN: every rank raises before step N)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / out), mode, *overrides], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    if mode.startswith("crash"):
        assert done.returncode != 0 and "simulated crash" in done.stderr, done.stderr[-4000:]
        return []
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((tmp_path / out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _ddp(root: Path, *overrides: str) -> list[str]:
    cfg = micro_train_config(root)  # the same stores as the other training tests
    return [f"data.root={cfg.data.root}", f"tracking.uri={cfg.tracking.uri}", f"trainer.runs_dir={cfg.trainer.runs_dir}",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.distributed=ddp", "trainer.threads=1",
            "trainer.curve_every=0", *overrides]  # fmt: skip


@pytest.mark.integration
def test_ddp_ranks_end_identical_on_different_data_with_one_mlflow_run(micro_root, tmp_path):
    overrides = _ddp(micro_root, "strategy.name=ki", "trainer.max_steps=4", "trainer.run_name=ddp-ki")
    ranks = _run(tmp_path, "ki", overrides)
    assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [4, 4]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients all-reduced: one model on both ranks
    assert all(
        a != b for a, b in zip(ranks[0]["batches"], ranks[1]["batches"], strict=True)
    )  # own data per rank
    client = MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kinsul")
    runs = client.search_runs([exp.experiment_id], "attributes.run_name = 'ddp-ki'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run, from rank 0
    losses = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert len({m.step for m in losses}) == len(losses) > 0  # each step logged once


@pytest.mark.integration
def test_a_schedule_switches_on_both_ranks_and_a_ddp_resume_continues_exactly(micro_root, tmp_path):
    """delayed_unfreeze turns the backbone on at step 2 on both ranks (the backbone then trains, its gradients
    reduced: identical weights); crashed at step 3 and resumed under DDP from the step-2 checkpoint, it ends where
    4 uninterrupted steps end."""
    common = [
        "strategy.name=delayed_unfreeze",
        "strategy.options.unfreeze_at=2",
        "trainer.checkpoint_every=2",
    ]
    full = _run(
        tmp_path, "full", _ddp(micro_root, *common, "trainer.max_steps=4", "trainer.run_name=ddp-full")
    )
    assert full[0]["weights"] == full[1]["weights"]
    for rank in full:
        assert [g["backbone"] for g in rank["trainable"]] == [False, False, True, True]
        assert rank["backbone_moved"]  # it trained after step 2, the same on both ranks
    again = _ddp(micro_root, *common, "trainer.max_steps=4", "trainer.run_name=ddp-resumed")
    _run(tmp_path, "first", again, mode="crash3")
    resumed = _run(tmp_path, "second", again, mode="resume")
    assert resumed[0]["weights"] == resumed[1]["weights"] == full[0]["weights"]


@pytest.mark.integration
def test_bf16_mixed_precision_trains_a_step_on_this_cpu(micro_root):
    """bf16-mixed is autocast on CPU too: the losses stay finite and the weights move (slower than fp32 on an
    AVX2 CPU: a GPU setting, checked here for correctness only)."""
    from kinsul.training.train import train

    run = train(micro_train_config(micro_root, "trainer.precision=bf16-mixed", "trainer.max_steps=2",
                                   "trainer.curve_every=0", "trainer.run_name=bf16"), progress=False)  # fmt: skip
    client = MlflowClient(f"sqlite:///{micro_root / 'mlflow.db'}")
    run_id = (run / "mlflow_run_id").read_text().strip()
    losses = [m.value for m in client.get_metric_history(run_id, "train/loss")]
    assert losses and all(v == v and abs(v) < 1e6 for v in losses)


def test_fsdp_needs_cuda_and_says_so_before_any_work(tmp_path, capsys):
    import torch

    from kinsul.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: FSDP is allowed here (run `kinsul train gpu trainer.distributed=fsdp`)")
    assert main(["train", "micro", "trainer.distributed=fsdp", f"trainer.runs_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FSDP needs CUDA devices" in err[0]
