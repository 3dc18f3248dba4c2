"""`kinsul train`: preset + overrides -> a run folder with config, checkpoints (last + best) and an MLflow run."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import Logger

from kinsul import tracking
from kinsul.config.loader import load_config, save_config
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.evaluation.curve import SuccessCurve, curve_specs
from kinsul.evaluation.environments import environment
from kinsul.fields import ConfigError
from kinsul.runs.assembly import prepare, run_name
from kinsul.runs.checkpoints import (
    BestCheckpoint,
    ExceptionCheckpoint,
    LastCheckpoint,
    SafeCheckpointIO,
    checkpoint_step,
)
from kinsul.runs.pretrained import vlm_name
from kinsul.runs.signals import RunInterrupted
from kinsul.strategies import create
from kinsul.strategies.base import Strategy
from kinsul.training.callbacks import PhaseTimes, StepsToTarget
from kinsul.training.datamodule import KinsulDataModule, split_batch
from kinsul.training.module import VLAModule, resolve_loss_weights


def make_logger(
    cfg: KinsulConfig,
    run_dir: Path,
    strategy: Strategy,
    tracker: tracking.Tracker,
    counts: dict[str, int] | None = None,
) -> Logger | bool:
    # a sweep's trial is a child of the sweep's run; the role tells them apart in MLflow searches
    role = "trial" if cfg.tracking.parent_run_id else "run"
    tags = {"strategy": strategy.name, "seed": str(cfg.seed), "kinsul.role": role,
            "mlflow.note.content": strategy.description,
            "kinsul.strategy.package": strategy_package(cfg.strategy.name),
            # the backbone it started from: a report can place runs of several VLMs along their domain gap
            "kinsul.vlm": cfg.model.pretrained_path or vlm_name(cfg)}  # fmt: skip
    # the package of each loss term it trains with (a plugin's term may come from another package)
    tags |= {f"kinsul.loss_term.{t}.package": strategy_package(t, terms=True) for t in strategy.loss_weights}
    params = {**flat_config(cfg), **effective_strategy(cfg, strategy)}
    params |= {f"trainable.{group}": str(n) for group, n in (counts or {}).items()}
    return tracker.lightning_logger(run_dir, tags, params)


def effective_strategy(cfg: KinsulConfig, strategy: Strategy) -> dict[str, str]:
    """What the run trains with once the strategy's defaults and the config's overrides are resolved (the config
    holds only the overrides: `strategy.loss_weights: {}` means the strategy's own weights)."""
    from kinsul.strategies.describe import options_of

    weights = resolve_loss_weights(strategy, dict(cfg.strategy.loss_weights))
    out = {f"effective.loss_weights.{k}": f"{v:g}" for k, v in weights.items()}
    out |= {"effective.vlm_ratio": f"{strategy.vlm_ratio:g}", "effective.decoding": strategy.decoding}
    out |= {f"effective.options.{k}": str(v) for k, (_, v) in options_of(strategy).items()}
    return out


def strategy_package(name: str, terms: bool = False) -> str:
    """'<package> <version>' of the distribution that registers the strategy (``terms``: the loss term) of that
    name: a plugin's, or kinsul's."""
    from kinsul.strategies import losses, registry
    from kinsul.strategies.describe import version_of
    from kinsul.strategies.plugins import lookup, package

    if terms:
        ep = lookup(losses.GROUP, "loss term", "loss_weights key", name)
    else:
        ep = lookup(registry.GROUP, "strategy", "strategy.name", name)
    return f"{package(ep)} {version_of(ep)}" if ep is not None else "?"


def flat_config(cfg: KinsulConfig) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = str(v)

    walk(dataclasses.asdict(cfg), "")
    return out


def success_curve(cfg: KinsulConfig, strategy: Strategy, tok, fast) -> list[L.Callback]:
    tc, m = cfg.trainer, cfg.model
    if not tc.curve_every:
        return []
    robot_frames, _ = split_batch(tc.batch_size, strategy.vlm_ratio)
    env = environment(cfg)
    # the headline families only: a family left out of eval/success would cost the most (its failures run to
    # world.max_steps) and tell nothing about the curve
    specs = curve_specs(env.headline, tc.curve_episodes, cfg.eval.seed)
    normalization = store.robot_normalization(cfg)
    return [SuccessCurve(specs, env, tc.curve_every, tc.success_target, cfg.eval.execute_steps, robot_frames,
                         dict(tok=tok, fast=fast, decoding=strategy.decoding, flow_steps=m.flow_steps,
                              max_text_len=m.max_text_len, max_fast_len=m.max_fast_len), normalization)]  # fmt: skip


# What a resumed run may change: its budget and where it runs and logs, never what it trains.
RESUME_FREE = ("trainer.max_steps", "trainer.threads", "trainer.runs_dir", "tracking.")


def check_resume(run_dir: Path, cfg: KinsulConfig) -> None:
    saved, now = flat_config(load_config(str(run_dir / "config.yaml"))), flat_config(cfg)
    differ = sorted(k for k in saved.keys() | now.keys()
                    if saved.get(k) != now.get(k) and not k.startswith(RESUME_FREE))  # fmt: skip
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)} -> {now.get(k)})" for k in differ[:6])
        raise ConfigError(differ[0], f"run folder '{run_dir}' was trained with another configuration: {shown}"
                          f"{' ...' if len(differ) > 6 else ''}; resume with its config.yaml, or start a new "
                          "trainer.run_name")  # fmt: skip


class SignalRecorder(L.Callback):
    """Which signal ended fit (Lightning turns SIGTERM into SIGTERMException and SIGINT into sys.exit(1), both
    plain exits to the caller) and at which step."""

    def __init__(self):
        self.signal: str | None = None
        self.step = 0

    def on_exception(self, trainer, pl_module, exception):
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            self.signal = "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            self.signal = "SIGINT"
        self.step = trainer.global_step


def check_machine(tc) -> None:
    """trainer.accelerator, devices and distributed against what this machine has: one line before any work,
    not Lightning's traceback after the model is built."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = int(torch.backends.mps.is_available())
    if tc.accelerator in ("gpu", "cuda") and not cuda:
        raise ConfigError("trainer.accelerator", f"got '{tc.accelerator}', but this machine has no CUDA device "
                          f"(torch {torch.__version__}): use cpu or auto")  # fmt: skip
    if tc.accelerator == "mps" and not mps:
        raise ConfigError(
            "trainer.accelerator", "got 'mps', but this machine has no Apple GPU: use cpu or auto"
        )
    on = {"gpu": "cuda", "cuda": "cuda", "mps": "mps", "cpu": "cpu"}.get(tc.accelerator)
    on = on or ("cuda" if cuda else "mps" if mps else "cpu")
    if tc.distributed == "fsdp" and on != "cuda":
        raise ConfigError("trainer.distributed", f"got 'fsdp', but training runs on {on}: Lightning's FSDP needs "
                          "CUDA devices; use ddp (CPU processes over gloo) or auto")  # fmt: skip
    have = {"cuda": cuda, "mps": mps, "cpu": os.cpu_count() or 1}[on]
    if tc.devices > have:
        raise ConfigError("trainer.devices", f"got {tc.devices}, but this machine has {have} {on} "
                          f"{'core' if on == 'cpu' else 'device'}{'s' if have != 1 else ''}")  # fmt: skip


def lightning_strategy(distributed: str, strategy: Strategy) -> str:
    """Lightning's strategy for ``trainer.distributed``. A strategy with a step hook may switch a parameter group
    off for some steps (delayed_unfreeze): DDP must then look for parameters without a gradient each step, or
    its reducer stops the run; others keep DDP's faster default."""
    if distributed == "ddp" and hasattr(strategy, "on_step"):
        return "ddp_find_unused_parameters_true"
    return distributed


class RecordConfig(L.Callback):
    """A resumed run records its config (a raised budget) once its checkpoint has loaded: a resume that fails
    before that (a damaged checkpoint, a bad run id) leaves the run folder's config.yaml as it was."""

    def __init__(self, cfg: KinsulConfig, path: Path):
        self.cfg, self.path = cfg, path

    def on_train_start(self, trainer, pl_module):
        save_config(self.cfg, self.path)


RUN_MARKER = ".kinsul-run"  # written into every run folder kinsul makes


def check_run_folder(run_dir: Path) -> None:
    """kinsul writes only into folders it made: an existing, non-empty folder without the marker (or, for runs
    made before the marker, a last checkpoint) is someone else's, and its config.yaml is never overwritten."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise FileExistsError(f"'{run_dir}' exists and is not a folder: choose another trainer.run_name")
    ours = (run_dir / RUN_MARKER).exists() or (run_dir / "checkpoints" / "last.ckpt").exists()
    if not ours and any(run_dir.iterdir()):
        raise FileExistsError(f"folder '{run_dir}' exists and was not made by kinsul (no {RUN_MARKER}): kinsul does "
                              "not write into it; choose another trainer.run_name or trainer.runs_dir")  # fmt: skip


def train(
    cfg: KinsulConfig, resume: bool = False, progress: bool = True, callbacks: Sequence[L.Callback] = ()
) -> Path:
    """Train one run; ``callbacks`` join kinsul's own (sweeps add their Optuna reporting this way)."""
    strategy = create(cfg.strategy.name, cfg.strategy.options)
    resolve_loss_weights(strategy, dict(cfg.strategy.loss_weights))  # fail before any work
    split_batch(cfg.trainer.batch_size, strategy.vlm_ratio)
    check_machine(cfg.trainer)
    tracker = tracking.tracker(cfg.tracking)
    tracker.check()  # an unreachable server fails here, in seconds
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    run_dir = Path(cfg.trainer.runs_dir) / run_name(cfg)
    last = run_dir / "checkpoints" / "last.ckpt"
    check_run_folder(run_dir)
    if run_dir.exists() and not resume and last.exists():
        raise FileExistsError(f"run folder '{run_dir}' already has checkpoints: pass --resume to continue it, "
                              "or choose another trainer.run_name")  # fmt: skip
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: run folder '{run_dir}' has no checkpoint to continue "
                                f"({'no such folder' if not run_dir.exists() else 'no checkpoints/last.ckpt'}); "
                                "run without --resume to start it")  # fmt: skip
    if resume and (run_dir / "config.yaml").is_file():
        check_resume(run_dir, cfg)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_MARKER).touch()
        if not resume:
            save_config(cfg, run_dir / "config.yaml")
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        signals = SignalRecorder()
        record = [RecordConfig(cfg, run_dir / "config.yaml")] if resume else []
        try:
            _fit(cfg, strategy, run_dir, last if resume and last.exists() else None, tracker, progress,
                 [signals, *record, *callbacks])  # fmt: skip
        except (SystemExit, KeyboardInterrupt):
            if signals.signal is None:
                raise
            run_id = tracking.run_id_of(run_dir)
            if run_id:
                tracker.end(run_id, "KILLED")
            raise RunInterrupted(
                signals.signal, signals.step, run_dir, last if last.exists() else None
            ) from None
    except BaseException:
        if created and not last.exists():  # failed before its first checkpoint: leave no run folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def _fit(cfg: KinsulConfig, strategy: Strategy, run_dir: Path, resume_from: Path | None,
         tracker: tracking.Tracker, progress: bool, callbacks: Sequence[L.Callback]) -> None:  # fmt: skip
    vla, tok, fast = prepare(cfg, strategy, progress)
    module = VLAModule(vla, strategy, cfg, fast)
    counts = module.trainable_counts()
    print(f"strategy '{strategy.name}' trains " + ", ".join(f"{g} {n:,}" for g, n in counts.items() if g != "frozen")
          + f" parameters; {counts['frozen']:,} frozen")  # fmt: skip
    data = KinsulDataModule(cfg, strategy, tok, fast)
    tc = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    trainer = L.Trainer(
        max_steps=tc.max_steps,
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.nodes,
        strategy=lightning_strategy(tc.distributed, strategy),
        precision=tc.precision,
        logger=make_logger(cfg, run_dir, strategy, tracker, counts),
        enable_progress_bar=progress,
        enable_model_summary=False,
        val_check_interval=tc.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=min(10, tc.val_every),
        gradient_clip_val=tc.grad_clip or None,
        default_root_dir=str(run_dir),
        plugins=[SafeCheckpointIO()],
        callbacks=[
            PhaseTimes(),  # first: it times the curve's step-0 point too
            # next: a curve point measured at step N is in the checkpoint saved at step N
            *success_curve(cfg, strategy, tok, fast),
            BestCheckpoint(
                dirpath=ckpt_dir, filename="best", monitor="val/velocity_mse", mode="min", save_top_k=1
            ),
            LastCheckpoint(ckpt_dir / "last.ckpt", tc.checkpoint_every),
            ExceptionCheckpoint(dirpath=ckpt_dir, filename="last"),
            StepsToTarget("val/velocity_mse", tc.velocity_mse_target),
            *callbacks,
        ],
    )
    data.start_step = checkpoint_step(resume_from) if resume_from else 0
    trainer.fit(
        module, datamodule=data, ckpt_path=str(resume_from) if resume_from else None, weights_only=True
    )
