"""Training-step time per strategy at the tiny preset (forward + backward + AdamW step, synthetic batch)."""

from __future__ import annotations

import statistics
import time

import torch

from kinsul.bench.models import _obs
from kinsul.config import load_config
from kinsul.data.batch import Observation
from kinsul.data.tensors import RobotBatch
from kinsul.models.build import build_vla
from kinsul.strategies import create
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.training.module import VLAModule
from kinsul.training.pretrain import data_spec, make_tokenizer

STRATEGIES = ["naive", "frozen", "stop_grad", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki", "pi0_fast"]


def strategy_steps(batch: int = 32, rounds: int = 10) -> dict:
    cfg = load_config()
    tok = make_tokenizer(cfg)
    g = torch.Generator().manual_seed(0)
    H = cfg.data.chunk_size
    chunks = (torch.rand(200, H, 3, generator=g) * 2 - 1).cumsum(1).clamp(-1, 1).numpy()
    fast = FastTokenizer(H, 3, cfg.model.fast_scale, cfg.model.fast_vocab_size).fit(chunks)
    obs = _obs(cfg, tok, batch)
    f = tok.batch([[tok.sep_id, *tok.action_ids(fast.encode(c)), tok.eos_id] for c in chunks[:batch]])
    robot = RobotBatch(
        obs, torch.from_numpy(chunks[:batch]), torch.zeros(batch, H, dtype=torch.bool), f.ids, f.mask
    )
    steps = {}
    for name in STRATEGIES:
        strategy = create(name)
        torch.manual_seed(0)
        vla = build_vla(cfg.model, tok, data_spec(cfg), with_expert=strategy.needs_expert)
        module = VLAModule(vla, strategy, cfg, fast)
        n_vlm = max(1, round(batch * strategy.vlm_ratio)) if strategy.vlm_ratio else 0
        q = tok.batch([[tok.bos_id, *tok.encode("what colour is the square")]] * max(1, n_vlm))
        a = tok.batch([[tok.sep_id, tok.vocab["red"], tok.eos_id]] * max(1, n_vlm))
        vlm = (
            Observation(obs.images[: len(q.ids)], torch.zeros(len(q.ids), 0), q.ids, q.mask),
            a.ids,
            a.mask,
        )
        opt = torch.optim.AdamW([{"params": grp.params} for grp in module.groups], lr=1e-4)
        module.train()
        module.on_train_epoch_start()

        def step(module=module, opt=opt, vlm=vlm if n_vlm else None):
            losses = module.compute_losses(robot, vlm)
            loss = sum(module.weights[k] * v for k, v in losses.items())
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps[name] = step
    # Interleaved rounds: every strategy is timed once per round, so drift in machine speed hits all alike.
    times: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    for fn in steps.values():
        fn(), fn()  # warm-up
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    details = {}
    for name in STRATEGIES:
        ms = statistics.median(times[name])
        details[f"{name}_step_ms"] = round(ms, 1)
        details[f"{name}_samples_per_s"] = round(batch / ms * 1000, 1)
    ratio = details["ki_step_ms"] / details["naive_step_ms"]
    return {"value": round(ratio, 2), "unit": "x (ki step / naive step)", "goal": "<= 1.5x", "ok": ratio <= 1.5,
            "command": "kinsul bench strategy_steps", "details": {"batch": batch, "rounds": rounds, **details}}  # fmt: skip
