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


def _tiny_data():
    """(config, tokenizer, FAST tokenizer, robot train tensors, VLM train tensors) of the default (tiny) preset,
    generating the datasets if needed."""
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
    return cfg, tok, fast, robot, vlm_data


def _training_setup(name, cfg, tok, fast, robot, vlm_data, batch: int, n_batches: int):
    """(module, its first ``n_batches`` training batches, AdamW, the stream's robot frames per batch) for one
    strategy, seeded alike: ``batch`` samples per step, co-training strategies giving vlm_ratio of them to VLM
    data, in one length group (padding as in training)."""
    strategy = create(name)
    torch.manual_seed(0)
    module = VLAModule(build_vla(cfg.model, tok, data_spec(cfg), with_expert=strategy.needs_expert), strategy, cfg,
                       fast)  # fmt: skip
    stream = MixedBatches(robot, vlm_data if strategy.vlm_ratio else None, batch, strategy.vlm_ratio, 0,
                          tok.pad_id, length_groups(cfg, strategy))  # fmt: skip
    batches = list(itertools.islice(iter(stream), n_batches))
    opt = torch.optim.AdamW([{"params": grp.params} for grp in module.groups], lr=1e-4)
    module.train()
    module.on_train_epoch_start()
    return module, batches, opt, stream.batch_size


def _cycling_step(module, opt, batches):
    """A full training step (forward, backward, AdamW) whose every call takes the next of ``batches``, cyclically."""
    calls = itertools.count()

    def step():
        losses = module.compute_losses(batches[next(calls) % len(batches)])
        loss = sum(module.weights[k] * v for k, v in losses.items())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def strategy_steps(batch: int = 32, rounds: int = 12) -> dict:
    """Each strategy's first training batch comes from the generated datasets through the training stream
    (real prompts, real FAST lengths, VLM samples in the strategy's share of the batch), as in `kinsul train`."""
    cfg, tok, fast, robot, vlm_data = _tiny_data()
    steps, fast_tokens, fast_padded, robot_frames = {}, 0.0, 0.0, {}
    n_batches = max(cfg.trainer.length_groups, 2)
    for name in builtins():
        module, batches, opt, robot_frames[name] = _training_setup(name, cfg, tok, fast, robot, vlm_data, batch,
                                                                   n_batches)  # fmt: skip
        if name == "ki":
            fast_tokens = statistics.mean(float(b.robot.fast_mask.sum(1).float().mean()) for b in batches)
            fast_padded = statistics.mean(b.robot.fast_ids.shape[1] for b in batches)

        steps[name] = _cycling_step(module, opt, batches)  # each call takes the next batch of the group
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


def step_profile(batch: int = 32, steps: int = 8, strategies: tuple[str, ...] = ("naive", "ki")) -> dict:
    """Where a tiny training step's time goes, by torch.profiler over ``steps`` real batches per strategy (as
    strategy_steps builds them): the forward pass split into the prefix (vision tower, connector, embeddings),
    the joint layers and the rest (heads, losses, masks, RoPE), the backward pass, the AdamW step; and the
    operators that take the most time. Profiled steps run slower than plain ones; the shares are what count."""
    from torch.profiler import ProfilerActivity, profile, record_function

    cfg, tok, fast, robot, vlm_data = _tiny_data()
    details: dict[str, float] = {"batch": batch, "steps": steps}
    for name in strategies:
        module, batches, opt, _ = _training_setup(name, cfg, tok, fast, robot, vlm_data, batch, steps)

        def step(b, module=module, opt=opt):
            with record_function("step.forward"):
                losses = module.compute_losses(b)
                loss = sum(module.weights[k] * v for k, v in losses.items())
            opt.zero_grad()
            with record_function("step.backward"):
                loss.backward()
            with record_function("step.optimizer"):
                opt.step()

        step(batches[0])  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches:
                step(b)
        events = {e.key: e for e in prof.key_averages()}

        def ms(key: str, events=events) -> float:
            return events[key].cpu_time_total / 1000 / steps if key in events else 0.0

        total = ms("step.forward") + ms("step.backward") + ms("step.optimizer")
        parts = {"forward_prefix": ms("vla.prefix"), "forward_layers": ms("vla.layers"),
                 "forward_rest": ms("step.forward") - ms("vla.prefix") - ms("vla.layers"),
                 "backward": ms("step.backward"), "optimizer": ms("step.optimizer")}  # fmt: skip
        details[f"{name}_step_ms_profiled"] = round(total, 1)
        details |= {f"{name}_{part}_pct": round(100 * v / total, 1) for part, v in parts.items()}
        ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        self_total = sum(e.self_cpu_time_total for e in ops)
        for e in sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:5]:
            details[f"{name}_op_{e.key.removeprefix('aten::')}_pct"] = round(
                100 * e.self_cpu_time_total / self_total, 1
            )
    share = details["naive_forward_layers_pct"] + details["naive_backward_pct"]
    return {"value": round(share, 1), "unit": "% of a naive step in the joint layers' forward + the backward",
            "goal": "profile only (where the time goes)", "ok": True, "command": "kinsul bench step_profile",
            "details": details}  # fmt: skip


def _first_compiled_steps(name: str, cache_dir: str, batch: int) -> float:
    """Seconds of a fresh process's first two compiled steps of ``name`` (compiling included), with Inductor's
    on-disk cache in ``cache_dir``: empty, the cold compile; filled by an earlier call, the warm one."""
    import os

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    cfg, tok, fast, robot, vlm_data = _tiny_data()
    module, batches, opt, _ = _training_setup(name, cfg, tok, fast, robot, vlm_data, batch, 2)
    module.vla.compile_layers = True
    step = _cycling_step(module, opt, batches)
    start = time.perf_counter()
    for _ in batches:
        step()
    return time.perf_counter() - start


def _sgemm_gflops() -> float:
    """This machine's fp32 matmul rate at a tiny layer's shape (1024 tokens x 128 -> 384): the roofline a step's
    matmuls can reach."""
    a, b = torch.randn(1024, 128), torch.randn(128, 384)
    for _ in range(5):
        a @ b
    start, n = time.perf_counter(), 200
    for _ in range(n):
        a @ b
    return 2 * 1024 * 128 * 384 * n / (time.perf_counter() - start) / 1e9


def step_speedups(batch: int = 32, rounds: int = 12) -> dict:
    """The speed options against the plain step, interleaved in one process: fused AdamW
    (trainer.fused_optimizer) and the compiled joint layer pass on top (trainer.compile), for naive and ki; the
    compile's cost, cold and from Inductor's disk cache (fresh processes); and the step's matmul work against
    this machine's matmul rate (why the step cannot go much faster without computing less)."""
    import concurrent.futures
    import multiprocessing
    import tempfile

    from torch.utils.flop_counter import FlopCounterMode

    cfg, tok, fast, robot, vlm_data = _tiny_data()
    variants = {"eager": (False, False), "fused": (False, True), "compiled_fused": (True, True)}
    steps, details = {}, {"batch": batch, "rounds": rounds, "threads": torch.get_num_threads()}
    for name in ("naive", "ki"):
        for label, (compiled, fused) in variants.items():
            module, batches, _, _ = _training_setup(name, cfg, tok, fast, robot, vlm_data, batch, 4)
            opt = torch.optim.AdamW(
                [{"params": g.params} for g in module.groups], lr=1e-4, fused=fused or None
            )
            module.vla.compile_layers = compiled
            step = _cycling_step(module, opt, batches)
            for _ in range(len(batches)):  # every length group compiled before timing
                step()
            steps[(name, label)] = step
            if label == "eager":
                with FlopCounterMode(display=False) as flops:
                    step()
                details[f"{name}_gflop_per_step"] = round(flops.get_total_flops() / 1e9, 2)
    times: dict = {key: [] for key in steps}
    for _ in range(rounds):
        for key, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[key].append(1000 * (time.perf_counter() - start))
    for (name, label), ts in times.items():
        details[f"{name}_{label}_ms"] = round(statistics.median(ts), 1)
    for name in ("naive", "ki"):
        for label in ("fused", "compiled_fused"):
            details[f"{name}_{label}_speedup"] = round(
                details[f"{name}_eager_ms"] / details[f"{name}_{label}_ms"], 2
            )
        details[f"{name}_eager_gflops"] = round(
            details[f"{name}_gflop_per_step"] / details[f"{name}_eager_ms"] * 1e3, 1
        )
    details["sgemm_gflops_at_layer_shape"] = round(_sgemm_gflops(), 1)
    details["ki_over_naive_eager"] = round(details["ki_eager_ms"] / details["naive_eager_ms"], 2)
    details["ki_over_naive_compiled_fused"] = round(
        details["ki_compiled_fused_ms"] / details["naive_compiled_fused_ms"], 2
    )
    # compile cost in fresh processes: the same cache folder twice (cold, then from disk)
    with tempfile.TemporaryDirectory() as cache:
        ctx = multiprocessing.get_context("spawn")
        for name in ("naive", "ki"):
            for label in ("cold", "warm"):
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    seconds = pool.submit(_first_compiled_steps, name, cache, batch).result()
                details[f"{name}_first_2_steps_s_{label}"] = round(seconds, 1)
    speedup = details["naive_compiled_fused_speedup"]
    return {"value": speedup, "unit": "x naive step speed, compiled + fused AdamW over the plain step",
            "goal": ">= 1.5x (issue 27)", "ok": speedup >= 1.5, "command": "kinsul bench step_speedups",
            "details": details}  # fmt: skip


BASELINE = "fa2f1c7"  # issue 27's "today": the commit at which it quoted the step times to beat


def step_against_baseline(rounds: int = 15, repeats: int = 3, rev: str = BASELINE) -> dict:
    """Today's naive and ki steps (plain, and compiled + fused AdamW) against the baseline commit's plain step:
    ``rev`` checked out in a temporary git worktree, each version in its own fresh process (one kinsul per
    interpreter), the three processes alternating ``repeats`` times so that drift in machine speed hits all
    alike. Both read the same generated datasets (this checkout's data folder)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    git = ["git", "-C", str(root)]
    if subprocess.run([*git, "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True).returncode:
        raise RuntimeError(
            f"step_against_baseline: {root} is not a git clone holding commit {rev} (the baseline)"
        )
    child = Path(__file__).with_name("step_child.py")
    with tempfile.TemporaryDirectory() as tmp:
        baseline, cache = Path(tmp) / "baseline", Path(tmp) / "inductor"
        subprocess.run(
            [*git, "worktree", "add", "--detach", str(baseline), rev], check=True, capture_output=True
        )
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
        runs = {"baseline_plain": (baseline, "plain"), "plain": (root, "plain"),
                "compiled_fused": (root, "compiled_fused")}  # fmt: skip
        ms: dict[str, dict[str, list[float]]] = {label: {"naive": [], "ki": []} for label in runs}
        try:
            for _ in range(repeats):
                for label, (checkout, mode) in runs.items():
                    out = subprocess.run([sys.executable, str(child), str(checkout), mode, str(rounds)], cwd=root,
                                         env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
                    for name, value in json.loads(out.strip().splitlines()[-1]).items():
                        ms[label][name].append(value)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(baseline)], capture_output=True)
    details: dict = {
        "baseline": rev,
        "rounds": rounds,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
    }
    for label, by_name in ms.items():
        for name, values in by_name.items():
            details[f"{name}_{label}_ms"] = round(statistics.median(values), 1)
            details[f"{name}_{label}_ms_per_process"] = [round(v, 1) for v in values]
    for name in ("naive", "ki"):
        for label in ("plain", "compiled_fused"):
            details[f"{name}_{label}_speedup"] = round(
                details[f"{name}_baseline_plain_ms"] / details[f"{name}_{label}_ms"], 2
            )
    for label in runs:
        details[f"ki_over_naive_{label}"] = round(details[f"ki_{label}_ms"] / details[f"naive_{label}_ms"], 2)
    speedup = details["naive_compiled_fused_speedup"]
    return {"value": speedup, "unit": f"x naive step speed, compiled + fused AdamW over {rev}'s plain step",
            "goal": ">= 1.5x, and ki <= 1.3x naive (issue 27)",
            "ok": speedup >= 1.5 and details["ki_over_naive_compiled_fused"] <= 1.3,
            "command": "kinsul bench step_against_baseline", "details": details}  # fmt: skip
