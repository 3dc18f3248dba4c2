"""One process of `kinsul bench step_against_baseline`: the naive and ki training steps of the kinsul checkout
given (any commit since the benchmark's baseline), timed in interleaved rounds; prints one JSON line.

Run as a script, never imported: the checkout's own ``kinsul`` must be the one imported, so this file touches
nothing of the package it lives in. It uses only the set-up calls the baseline commit already had.

    python step_child.py CHECKOUT {plain|compiled_fused} ROUNDS
"""

import itertools
import json
import statistics
import sys
import time

checkout, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[0] = checkout  # not this file's folder, whose module names (models, world, ...) would shadow others

import torch  # noqa: E402

import kinsul  # noqa: E402

if not kinsul.__file__.startswith(checkout):
    sys.exit(f"step_child: imported kinsul from {kinsul.__file__}, expected the checkout {checkout}")

from kinsul.config import load_config  # noqa: E402
from kinsul.data import store  # noqa: E402
from kinsul.data.tensors import RobotTensors, VLMTensors  # noqa: E402
from kinsul.models.build import build_vla  # noqa: E402
from kinsul.runs.assembly import data_spec, make_fast_tokenizer, make_tokenizer  # noqa: E402
from kinsul.strategies import create  # noqa: E402
from kinsul.training.datamodule import MixedBatches, length_groups  # noqa: E402
from kinsul.training.module import VLAModule  # noqa: E402

cfg = load_config()
tok = make_tokenizer(cfg)
m = cfg.model
for kind in ("robot", "vlm"):
    store.generate(cfg, kind, progress=False)
fast = make_fast_tokenizer(cfg)
robot = RobotTensors.from_dataset(
    store.load(cfg, "robot")["train"], tok, fast, m.max_text_len, m.max_fast_len
)
vlm = VLMTensors.from_dataset(store.load(cfg, "vlm")["train"], tok, m.max_text_len)

steps = {}
for name in ("naive", "ki"):
    strategy = create(name)
    torch.manual_seed(0)
    module = VLAModule(
        build_vla(m, tok, data_spec(cfg), with_expert=strategy.needs_expert), strategy, cfg, fast
    )
    stream = MixedBatches(robot, vlm if strategy.vlm_ratio else None, 32, strategy.vlm_ratio, 0, tok.pad_id,
                          length_groups(cfg, strategy))  # fmt: skip
    batches = list(itertools.islice(iter(stream), 4))
    fused = mode == "compiled_fused"
    opt = torch.optim.AdamW([{"params": g.params} for g in module.groups], lr=1e-4, fused=fused or None)
    module.vla.compile_layers = fused  # an attribute the baseline never reads (it runs plain only)
    module.train()
    module.on_train_epoch_start()
    calls = itertools.count()

    def step(module=module, opt=opt, batches=batches, calls=calls):
        losses = module.compute_losses(batches[next(calls) % len(batches)])
        loss = sum(module.weights[k] * v for k, v in losses.items())
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(len(batches) + 1):  # every batch shape seen (and compiled) before timing
        step()
    steps[name] = step

times: dict[str, list[float]] = {name: [] for name in steps}
for _ in range(rounds):
    for name, fn in steps.items():
        start = time.perf_counter()
        fn()
        times[name].append(1000 * (time.perf_counter() - start))
print(json.dumps({name: statistics.median(ts) for name, ts in times.items()}))
