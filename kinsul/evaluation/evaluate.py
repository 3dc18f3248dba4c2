"""`kinsul eval <run folder or checkpoint>`: rollouts, language following, retention and latency of a trained
policy, printed as one table and logged to the run's MLflow entry."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from kinsul import tracking
from kinsul.config.loader import load_config
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.tensors import VLMTensors, prompt_ids
from kinsul.data.vqa import vqa_splits
from kinsul.evaluation.artifacts import success_plot, write_gifs, write_metrics
from kinsul.evaluation.environments import environment
from kinsul.evaluation.latency import FAST_TOKENS, chunk_latency
from kinsul.evaluation.policies import NormalizedPolicy, VLAPolicy
from kinsul.evaluation.retention import retention
from kinsul.evaluation.rollouts import EnvPool, evaluation_specs, rollout, summarize
from kinsul.models.build import build_vla, check_data_spec
from kinsul.runs import pretrained
from kinsul.runs.assembly import data_spec, make_tokenizer, prepare
from kinsul.runs.checkpoints import load_checkpoint
from kinsul.runs.clock import PhaseClock
from kinsul.strategies import create


def locate(target: str | Path, prefer: str = "last") -> tuple[Path, Path]:
    """(run folder, checkpoint) from a checkpoint file, or a run folder: its ``prefer`` checkpoint (last or
    best), else the other one."""
    target = Path(target)
    if target.is_file():
        return target.parent.parent, target
    order = ("last", "best") if prefer == "last" else ("best", "last")
    for name in order:
        if (target / "checkpoints" / f"{name}.ckpt").is_file():
            return target, target / "checkpoints" / f"{name}.ckpt"
    raise FileNotFoundError(f"'{target}' is neither a checkpoint file nor a run folder with "
                            "checkpoints/best.ckpt or checkpoints/last.ckpt")  # fmt: skip


def run_config(run_dir: Path, overrides: list[str]) -> tuple[KinsulConfig, KinsulConfig]:
    """(the config the run trained with, that config with evaluation overrides applied)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"run folder '{run_dir}' has no config.yaml: expected a folder made by kinsul train"
        )
    return load_config(str(path)), load_config(str(path), overrides)


def evaluate(target: str | Path, overrides: list[str] = (), log: bool = True) -> dict[str, float]:
    if Path(target).is_file():
        run_dir, ckpt = locate(target)
        checkpoint = load_checkpoint(ckpt)  # before any work: a damaged or crafted file stops here
        trained_cfg, cfg = run_config(run_dir, list(overrides))
    else:  # a run folder: the checkpoint its eval.checkpoint (with the overrides) names
        run_dir, _ = locate(target)
        trained_cfg, cfg = run_config(run_dir, list(overrides))
        checkpoint = load_checkpoint(locate(run_dir, cfg.eval.checkpoint)[1])
    # the checkpoint's model must fit the world it is evaluated in
    check_data_spec(data_spec(trained_cfg), data_spec(cfg), "the evaluation world")
    strategy = create(trained_cfg.strategy.name, trained_cfg.strategy.options)
    vla, tok, fast = prepare(trained_cfg, strategy, progress=False)
    state = checkpoint["state_dict"]
    vla.load_state_dict({k.removeprefix("vla."): v for k, v in state.items() if k.startswith("vla.")})
    vla.eval()
    e = cfg.eval
    # The policy's flow noise, seeded: a checkpoint scores the same in any process (a sweep worker's RNG state
    # after training, which differs between an uninterrupted and a resumed trial, would otherwise decide it).
    torch.manual_seed(e.seed)
    metrics: dict[str, float] = {}
    policy = VLAPolicy(vla, tok, fast, strategy.decoding, cfg.model.flow_steps, cfg.model.max_text_len,
                       cfg.model.max_fast_len)  # fmt: skip
    clock = PhaseClock()  # where the evaluation's time goes: time/eval_*_s
    results, rates = {}, {}
    env = environment(cfg)
    if env is not None:  # eval.env=none: data without a simulator is scored offline only
        normalization = store.robot_normalization(trained_cfg)
        actor = NormalizedPolicy(policy, normalization) if normalization else policy
        specs = evaluation_specs(env.tasks, e.episodes, e.seed, env.sets)
        start = time.perf_counter()
        with (
            clock.phase("rollouts"),
            env.rolling_out(),
            EnvPool(env.make) as pool,
        ):  # one set-up for every set
            results = {k: rollout(actor, v, pool, e.execute_steps, e.batch, record=e.videos)
                       for k, v in specs.items()}  # fmt: skip
        steps = sum(r.steps for rs in results.values() for r in rs)
        metrics["speed/rollout_steps_per_s"] = steps / (time.perf_counter() - start)
        rates = summarize(results, env.headline)
        for key, r in rates.items():
            metrics[key] = r["value"]
            metrics[f"{key}_n"] = float(r["n"])
    if strategy.decoding == "fast":
        metrics["eval/fast_invalid_chunks"] = float(policy.invalid_chunks)
    with clock.phase("offline"):
        metrics.update(_offline_errors(vla, tok, fast, strategy.decoding, trained_cfg))
    with clock.phase("retention"):
        metrics.update(_retention(vla, trained_cfg))
    with clock.phase("latency"):
        metrics.update(_latency(vla, tok, cfg))
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    with clock.phase("artifacts"):
        files = [*write_gifs(results["seen"] + results.get("heldout", []), out),
                 success_plot(rates, env.tasks, out)] if results else []  # fmt: skip
    metrics.update(clock.metrics("time/eval_"))
    files.append(write_metrics(metrics, out))
    run_id = tracking.run_id_of(run_dir)
    if log and run_id:
        tracker = tracking.tracker(trained_cfg.tracking)
        # At the end of training's step axis, not the (often earlier) best checkpoint's step: the success curve
        # logs eval/success up to the last step, and MLflow's summary value of a key (its UI columns, a plain
        # get_run) is the one at the highest step, which must be this evaluation's, not the curve's last point.
        step = max(checkpoint["global_step"], trained_cfg.trainer.max_steps)
        tracker.log_metrics(run_id, metrics, step)
        tracker.log_artifacts(run_id, files, artifact_path="eval")
    return metrics, rates


def _offline_errors(vla, tok, fast, decoding: str, cfg: KinsulConfig) -> dict[str, float]:
    """Offline chunk errors (``kinsul.models.decoding.chunk_metrics``) with the strategy's own decoding, on
    held-out demonstrations (validation split: val/...) and on demonstrations that target held-out concepts
    (probe split: val/..._heldout)."""
    from torchmetrics.aggregation import MeanMetric

    from kinsul.data.tensors import FixedBatches, RobotTensors, even_subset
    from kinsul.models.decoding import chunk_errors

    robot = store.load(cfg, "robot")
    m, out = cfg.model, {}
    for split, suffix in (("validation", ""), ("probe", "_heldout")):
        ds = even_subset(robot[split], cfg.eval.offline_frames)
        if len(ds) == 0:  # a source without held-out demonstrations (data.lerobot.probe_episodes=0)
            out.update({f"val/{key}{suffix}": float("nan") for key in ("action_mse", "velocity_mse")})
            continue
        data = RobotTensors.from_dataset(ds, tok, fast, m.max_text_len, m.max_fast_len)
        means = {"action_mse": MeanMetric(), "velocity_mse": MeanMetric()}
        for i, batch in enumerate(FixedBatches(data, 64, tok.pad_id)):
            errors, _ = chunk_errors(vla, fast, decoding, batch, m.flow_steps, m.max_fast_len, i,
                                     samples=cfg.trainer.val_samples)  # fmt: skip
            for key, metric in means.items():
                metric.update(errors[key])
        for key, metric in means.items():
            out[f"val/{key}{suffix}"] = float(metric.compute())
    return out


def _retention(vla, cfg: KinsulConfig) -> dict[str, float]:
    tok = make_tokenizer(cfg)
    probe_ds = vqa_splits(cfg)["probe"]
    if cfg.eval.probe_samples:
        probe_ds = probe_ds.select(range(min(cfg.eval.probe_samples, len(probe_ds))))
    probe = VLMTensors.from_dataset(probe_ds, tok, cfg.model.max_text_len)
    base_cfg = dataclasses.replace(cfg.model, pretrained_path=str(pretrained.resolve(cfg)))
    base = build_vla(base_cfg, tok, data_spec(cfg), with_expert=False)
    return retention(vla, base, probe)


def _latency(vla, tok, cfg: KinsulConfig) -> dict[str, float]:
    from kinsul.data.batch import Observation

    s = cfg.world.image_size
    text = prompt_ids(tok, ["put the red square on the blue circle"], cfg.model.max_text_len)
    obs = Observation(torch.from_numpy(np.full((1, s, s, 3), 200, np.uint8)), torch.zeros(1, vla.spec.state_dim), text,
                      text != tok.pad_id)  # fmt: skip
    return chunk_latency(vla, obs, cfg.model.flow_steps, FAST_TOKENS, cfg.eval.latency_repeats)


def format_table(metrics: dict[str, float], rates: dict[str, dict]) -> str:
    lines = [f"{'metric':<36}{'value':>10}  {'95% CI':<16}{'episodes':>9}"]
    for key, value in metrics.items():
        if key.endswith("_n"):
            continue
        r = rates.get(key)
        ci = f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]" if r else ""
        n = f"{r['n']}" if r else ""
        lines.append(f"{key:<36}{value:>10.3f}  {ci:<16}{n:>9}")
    return "\n".join(lines)
