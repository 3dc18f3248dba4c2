"""Training-step time per strategy at the tiny preset (forward + backward + AdamW step on a real batch)."""

from __future__ import annotations

import statistics
import time

import torch

from kinsul.config import load_config
from kinsul.data import store
from kinsul.data.fast_cache import fast_tokenizer
from kinsul.data.tensors import RobotTensors, VLMTensors
from kinsul.models.build import build_vla
from kinsul.strategies import create
from kinsul.training.datamodule import MixedBatches
from kinsul.training.module import VLAModule
from kinsul.training.pretrain import data_spec, make_tokenizer

STRATEGIES = ["naive", "frozen", "stop_grad", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki", "pi0_fast"]


def strategy_steps(batch: int = 32, rounds: int = 10) -> dict:
    """Each strategy's first training batch comes from the generated datasets through the training stream
    (real prompts, real FAST lengths, VLM samples at the strategy's ratio), as in `kinsul train`."""
    cfg = load_config()
    tok = make_tokenizer(cfg)
    m = cfg.model
    for kind in ("robot", "vlm"):
        store.generate(cfg, kind, progress=False)
    fast = fast_tokenizer(cfg)
    robot = RobotTensors.from_dataset(
        store.load(cfg, "robot")["train"], tok, fast, m.max_text_len, m.max_fast_len
    )
    vlm_data = VLMTensors.from_dataset(store.load(cfg, "vlm")["train"], tok, m.max_text_len)
    steps, fast_tokens = {}, 0.0
    # ki as a data mixture: its VLM samples take a quarter of the batch instead of coming on top of it (the
    # default; trainer.batch_size counts robot frames), so the step processes `batch` samples like naive's.
    n_mix = round(batch * create("ki").vlm_ratio)
    variants = [(name, name, batch) for name in STRATEGIES] + [("ki_mixture", "ki", batch - n_mix)]
    for label, name, n_robot in variants:
        strategy = create(name)
        torch.manual_seed(0)
        vla = build_vla(m, tok, data_spec(cfg), with_expert=strategy.needs_expert)
        module = VLAModule(vla, strategy, cfg, fast)
        ratio = strategy.vlm_ratio * batch / n_robot  # VLM samples per step stay round(batch * vlm_ratio)
        stream = MixedBatches(robot, vlm_data if strategy.vlm_ratio else None, n_robot, ratio, 0, tok.pad_id)
        robot_batch, vlm = next(iter(stream))
        fast_tokens = float(robot_batch.fast_mask.sum(1).float().mean())
        opt = torch.optim.AdamW([{"params": grp.params} for grp in module.groups], lr=1e-4)
        module.train()
        module.on_train_epoch_start()

        def step(module=module, opt=opt, robot=robot_batch, vlm=vlm):
            losses = module.compute_losses(robot, vlm)
            loss = sum(module.weights[k] * v for k, v in losses.items())
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps[label] = step
    # Interleaved rounds: every strategy is timed once per round, so drift in machine speed hits all alike.
    times: dict[str, list[float]] = {label: [] for label in steps}
    for fn in steps.values():
        fn(), fn()  # warm-up
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    details = {}
    for label, _, n_robot in variants:
        ms = statistics.median(times[label])
        details[f"{label}_step_ms"] = round(ms, 1)
        details[f"{label}_robot_frames_per_s"] = round(n_robot / ms * 1000, 1)
    ratio = details["ki_step_ms"] / details["naive_step_ms"]
    details["ki_mixture_vs_naive"] = round(details["ki_mixture_step_ms"] / details["naive_step_ms"], 2)
    return {"value": round(ratio, 2), "unit": "x (ki step / naive step)", "goal": "<= 1.5x", "ok": ratio <= 1.5,
            "command": "kinsul bench strategy_steps", "details": {"batch": batch, "rounds": rounds, "fast_tokens_mean": round(fast_tokens, 1), **details}}  # fmt: skip
