"""Training-step time per strategy at the tiny preset (forward + backward + AdamW step on a real batch)."""

from __future__ import annotations

import itertools
import statistics
import time

import torch

from kinsul.config import load_config
from kinsul.data import store
from kinsul.data.tensors import RobotTensors, VLMTensors
from kinsul.models.build import build_vla
from kinsul.runs.assembly import data_spec, make_fast_tokenizer, make_tokenizer
from kinsul.strategies import create
from kinsul.strategies.registry import builtins
from kinsul.training.datamodule import MixedBatches, length_groups
from kinsul.training.module import VLAModule


def strategy_steps(batch: int = 32, rounds: int = 12) -> dict:
    """Each strategy's first training batch comes from the generated datasets through the training stream
    (real prompts, real FAST lengths, VLM samples in the strategy's share of the batch), as in `kinsul train`."""
    cfg = load_config()
    tok = make_tokenizer(cfg)
    m = cfg.model
    for kind in ("robot", "vlm"):
        store.generate(cfg, kind, progress=False)
    fast = make_fast_tokenizer(cfg)
    robot = RobotTensors.from_dataset(
        store.load(cfg, "robot")["train"], tok, fast, m.max_text_len, m.max_fast_len
    )
    vlm_data = VLMTensors.from_dataset(store.load(cfg, "vlm")["train"], tok, m.max_text_len)
    steps, fast_tokens, fast_padded, robot_frames = {}, 0.0, 0.0, {}
    n_batches = max(cfg.trainer.length_groups, 2)
    for name in builtins():
        strategy = create(name)
        torch.manual_seed(0)
        vla = build_vla(m, tok, data_spec(cfg), with_expert=strategy.needs_expert)
        module = VLAModule(vla, strategy, cfg, fast)
        # `batch` samples per step for every strategy; co-training strategies give vlm_ratio of them to VLM data.
        stream = MixedBatches(robot, vlm_data if strategy.vlm_ratio else None, batch, strategy.vlm_ratio, 0,
                              tok.pad_id, length_groups(cfg, strategy))  # fmt: skip
        # The first `n_batches` batches of the stream in turn (one length group): padding as in training.
        batches = list(itertools.islice(iter(stream), n_batches))
        robot_frames[name] = stream.batch_size
        if name == "ki":
            fast_tokens = statistics.mean(float(b.robot.fast_mask.sum(1).float().mean()) for b in batches)
            fast_padded = statistics.mean(b.robot.fast_ids.shape[1] for b in batches)
        opt = torch.optim.AdamW([{"params": grp.params} for grp in module.groups], lr=1e-4)
        module.train()
        module.on_train_epoch_start()

        calls = itertools.count()  # each call takes the next batch of the group

        def step(module=module, opt=opt, batches=batches, calls=calls):
            losses = module.compute_losses(batches[next(calls) % len(batches)])
            loss = sum(module.weights[k] * v for k, v in losses.items())
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps[name] = step
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
    for name in builtins():
        ms = statistics.median(times[name])
        details[f"{name}_step_ms"] = round(ms, 1)
        details[f"{name}_samples_per_s"] = round(batch / ms * 1000, 1)
        details[f"{name}_robot_frames_per_s"] = round(robot_frames[name] / ms * 1000, 1)
    ratio = details["ki_step_ms"] / details["naive_step_ms"]
    return {"value": round(ratio, 2), "unit": "x (ki step / naive step)", "goal": "<= 1.5x", "ok": ratio <= 1.5,
            "command": "kinsul bench strategy_steps", "details": {"batch": batch, "rounds": rounds, "fast_tokens_mean": round(fast_tokens, 1), "fast_tokens_padded": round(fast_padded, 1), **details}}  # fmt: skip
