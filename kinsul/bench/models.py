"""Benchmarks of the neural parts: parameter counts, VLM probe accuracy, chunk latency, bf16 vs fp32."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from kinsul.config import load_config
from kinsul.data.batch import Observation
from kinsul.evaluation.latency import median_ms
from kinsul.models.build import build_vla
from kinsul.models.config import SIZE_PRESETS, ModelConfig
from kinsul.models.flow import interpolate, sample_time
from kinsul.models.vla import flow_loss, token_loss
from kinsul.runs.assembly import data_spec, make_fast_tokenizer, make_tokenizer


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_counts() -> dict:
    cfg = load_config()
    tok = make_tokenizer(cfg)
    details = {}
    for size in SIZE_PRESETS:
        vla = build_vla(ModelConfig(size=size), tok, data_spec(cfg))
        bb = vla.backbone.model
        details[f"{size}_vision"] = _count(bb.vision_tower) + _count(bb.multi_modal_projector)
        details[f"{size}_text"] = _count(bb.language_model)
        details[f"{size}_expert"] = _count(vla.expert)
    tiny = details["tiny_vision"] + details["tiny_text"]
    return {"value": tiny, "unit": "backbone parameters (tiny)", "goal": "a few million", "ok": None,
            "command": "kinsul bench param_counts", "details": details}  # fmt: skip


def _obs(cfg, tok, batch: int) -> Observation:
    g = torch.Generator().manual_seed(0)
    s = cfg.world.image_size
    enc = tok.batch([[tok.bos_id, *tok.encode("put the red square on the blue circle")]] * batch)
    images = torch.randint(0, 256, (batch, s, s, 3), dtype=torch.uint8, generator=g)
    return Observation(images, torch.rand(batch, 4, generator=g), enc.ids, enc.mask)


def fast_length(horizon: int, episodes: int = 300) -> float:
    """Mean FAST tokens (+ <eos>) per chunk of ``horizon`` steps, from a tokenizer fitted on demonstrations
    generated with that chunk length (in a temporary folder)."""
    import tempfile

    import numpy as np

    from kinsul.data import store

    with tempfile.TemporaryDirectory() as root:
        cfg = load_config(None, [f"data.root={root}", f"data.chunk_size={horizon}",
                                 f"data.robot_episodes={{train: {episodes}, validation: 1, probe: 1}}"])  # fmt: skip
        store.generate(cfg, "robot", progress=False)
        fast = make_fast_tokenizer(cfg)
        chunks = store.load(cfg, "robot")["train"].with_format("numpy", columns=["actions"])[:]["actions"]
        return float(np.mean([len(fast.encode(c)) + 1 for c in chunks.astype(np.float32)]))


def _interleaved_ms(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median ms of each function, timed in alternation (round-robin) so load on the machine hits all alike."""
    import statistics

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def chunk_latency(sizes: tuple[str, ...] = ("tiny", "small"), horizons: tuple[int, ...] = (10, 50),
                  rounds: int = 15) -> dict:  # fmt: skip
    """Per-chunk latency at batch 1, size preset x chunk length: the flow expert (backbone once + Euler steps over
    its cache) vs pi0-FAST greedy decoding of as many tokens as a FAST tokenizer fitted on chunks of that length
    produces on average (forced, so untrained weights do not change the count). Timed interleaved."""
    import dataclasses

    cfg = load_config()
    tok = make_tokenizer(cfg)
    table, details = [], {}
    lengths = {h: fast_length(h) for h in horizons}
    obs, steps = _obs(cfg, tok, 1), cfg.model.flow_steps
    for size in sizes:
        for h in horizons:
            n_fast = round(lengths[h])
            spec = dataclasses.replace(data_spec(cfg), horizon=h)
            vla = build_vla(dataclasses.replace(cfg.model, size=size, pretrained_path=None), tok, spec).eval()
            with torch.inference_mode():
                ms = _interleaved_ms({"flow": lambda vla=vla: vla.sample_actions(obs, steps=steps),
                                      "fast": lambda vla=vla, n=n_fast: vla.generate_fast(obs, n, stop_at_eos=False),
                                      "prefix": lambda vla=vla: vla.encode_prefix(obs)}, rounds)  # fmt: skip
            row = {"size": size, "horizon": h, "fast_tokens": round(lengths[h], 1),
                   "flow_ms": round(ms["flow"], 1), "fast_ms": round(ms["fast"], 1), "prefix_ms": round(ms["prefix"], 1),
                   "ratio": round(ms["fast"] / ms["flow"], 2)}  # fmt: skip
            table.append(row)
            details[f"{size}_H{h}"] = (f"flow {row['flow_ms']} ms, FAST {row['fast_ms']} ms ({row['fast_tokens']} "
                                       f"tokens), prefix {row['prefix_ms']} ms: {row['ratio']}x")  # fmt: skip
    goal_row = next((r for r in table if r["size"] == "small" and r["horizon"] == 50), table[-1])
    return {"value": goal_row["ratio"], "unit": f"x (FAST ms / flow ms) at {goal_row['size']}, H={goal_row['horizon']}",
            "goal": ">= 5x at small, H=50", "ok": goal_row["ratio"] >= 5,
            "command": "kinsul bench chunk_latency", "table": table,
            "details": {**details, "threads": torch.get_num_threads(), "flow_steps": cfg.model.flow_steps}}  # fmt: skip


def cpu_bf16_support() -> dict:
    """The CPU's model and whether it multiplies bf16 natively (AVX512-BF16 or AMX); without either, torch
    emulates bf16 matmuls and autocast is much slower than fp32 (STACK-NOTES measured 2x faster on a CPU with
    avx512_bf16)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?"
    )
    return {"cpu": model, "cpu_native_bf16": bool(flags & {"avx512_bf16", "amx_bf16"})}


def bf16_step(batch: int = 32) -> dict:
    """Training-step time (forward + backward + AdamW) of the joint pass (FAST tokens + flow expert) at the
    tiny preset, fp32 vs torch.autocast(bfloat16) on the CPU."""
    cfg = load_config()
    tok = make_tokenizer(cfg)
    torch.manual_seed(0)
    vla = build_vla(cfg.model, tok, data_spec(cfg))
    obs = _obs(cfg, tok, batch)
    suffix = tok.batch([[tok.sep_id, *tok.action_ids(list(range(14))), tok.eos_id]] * batch)
    actions = torch.rand(batch, cfg.data.chunk_size, 3) * 2 - 1
    opt = torch.optim.AdamW(vla.parameters(), lr=1e-4)

    def step(bf16: bool):
        def run():
            x_t, u = interpolate(actions, torch.randn_like(actions), sample_time(batch, 1.5, 1.0))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = vla(obs, suffix.ids, suffix.mask, x_t, sample_time(batch, 1.5, 1.0))
                loss = token_loss(out.suffix_logits, suffix.ids, suffix.mask) + flow_loss(out.velocity, u)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run

    fp32 = median_ms(step(False), repeats=10)
    bf16 = median_ms(step(True), repeats=10)
    return {"value": round(bf16 / fp32, 2), "unit": "x (bf16 ms / fp32 ms)", "goal": "measure; pick per preset",
            "ok": None, "command": "kinsul bench bf16_step",
            "details": {"fp32_step_ms": round(fp32, 1), "bf16_step_ms": round(bf16, 1), "batch": batch,
                        "size": cfg.model.size, **cpu_bf16_support()}}  # fmt: skip


GOAL_QTYPES = ("colour", "shape", "count", "relation", "loc")  # the question types the 0.9 goal names


def vlm_probe() -> dict:
    """Probe accuracy of the default pretrained VLM (the shipped copy unless a local cache overrides it),
    re-measured here on the VLM probe split; the pretraining wall time is the one its run recorded."""
    from kinsul.data import store
    from kinsul.data.tensors import VLMTensors
    from kinsul.evaluation.probe import probe_accuracy
    from kinsul.runs import pretrained

    cfg = load_config()
    path = pretrained.resolve(cfg)
    meta = pretrained.read_meta(path)
    tok = make_tokenizer(cfg)
    vla = build_vla(
        dataclasses.replace(cfg.model, pretrained_path=str(path)), tok, data_spec(cfg), with_expert=False
    )
    probe = VLMTensors.from_dataset(store.load(cfg, "vlm")["probe"], tok, cfg.model.max_text_len)
    acc = probe_accuracy(vla, probe)
    worst = min(acc[q] for q in GOAL_QTYPES)
    return {"value": round(worst, 3), "unit": f"probe accuracy, worst of {', '.join(GOAL_QTYPES)}",
            "goal": ">= 0.9 on each of those types (caption and side are reported, not goals)",
            "ok": worst >= 0.9, "command": "kinsul data generate && kinsul bench vlm_probe",
            "details": {**{f"acc_{k}": round(v, 3) for k, v in acc.items()},
                        "pretrain_minutes": round(meta["train_seconds_this_run"] / 60, 1),
                        "pretrain_command": meta["command"], "steps": meta["steps"],
                        "vision_steps": meta.get("vision_steps", 0), "model": meta["name"]}}  # fmt: skip


def eval_checkpoint(train_steps: int = 20) -> dict:
    """Wall time of `kinsul eval` on one checkpoint with the default seed set (30 episodes per set, the whole
    VLM probe), and the rollout throughput it measured. The checkpoint is a short ki run made here."""
    import tempfile

    from kinsul.evaluation.evaluate import evaluate
    from kinsul.training.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides=["strategy.name=ki", f"trainer.max_steps={train_steps}", "trainer.val_every=10",
                                     f"trainer.runs_dir={tmp}", "trainer.run_name=bench", "tracking.enabled=false"])  # fmt: skip
        run = train(cfg, progress=False)
        start = time.perf_counter()
        metrics, _ = evaluate(run, log=False)
        seconds = time.perf_counter() - start
    episodes = sum(
        int(metrics[f"{k}_n"]) for k in ("eval/success", "eval/success_heldout", "eval/language_following")
    )
    return {"value": round(seconds, 1), "unit": "s", "goal": "<= 120 s on 2 cores", "ok": seconds <= 120,
            "command": "kinsul bench eval_checkpoint",
            "details": {"rollout_env_steps_per_s": round(metrics["speed/rollout_steps_per_s"], 1),
                        "episodes": episodes, "size": cfg.model.size}}  # fmt: skip
