"""Where FAST tokens live in a checkpoint's vocabulary, and what it costs the VLM's knowledge: a PaliGemma
pretrained by plain transformers on its VQA folder (`kinsul example-vlm`), then trained with FAST tokens on the
vocabulary's last ids (`model.fast_tokens=last`, as pi0-FAST does) or on added rows (`added`), by `ki_no_vlm`
(FAST + flow, no VQA co-training: the FAST gradient alone reaches the backbone) and `pi0_fast`. Retention is
kinsul's probe on the folder's test split after training over before."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kinsul.backbones.examples import write_example
from kinsul.config import load_config
from kinsul.evaluation.evaluate import evaluate
from kinsul.training.train import train


def fast_placement(steps: int = 300, pretrain_steps: int = 300) -> dict:
    root = Path(tempfile.mkdtemp(prefix="kinsul-fast-placement-"))
    info = write_example(root / "ckpt", "paligemma", pretrain_steps=pretrain_steps)
    rows = []
    for strategy in ("ki_no_vlm", "pi0_fast"):
        for placement in ("last", "added"):
            cfg = load_config("micro", [f"data.root={root / 'data'}", f"trainer.runs_dir={root / 'runs'}",
                                        "tracking.enabled=false", f"strategy.name={strategy}",
                                        f"model.pretrained_path={info['model']}", f"data.vqa_path={info['vqa']}",
                                        "data.vqa_type=qtype", f"model.fast_tokens={placement}",
                                        f"trainer.max_steps={steps}", "trainer.batch_size=16", "trainer.curve_every=0",
                                        f"trainer.run_name={strategy}-{placement}"])  # fmt: skip
            run = train(cfg, progress=False)
            m, _ = evaluate(run, ["eval.episodes=2", "eval.videos=0"], log=False)
            rows.append({"strategy": strategy, "fast_tokens": placement, "probe_before": m["eval/probe_acc_pretrained"],
                         "probe_after": m["eval/probe_acc"], "retention": m["eval/retention"],
                         "val_velocity_mse": m["val/velocity_mse"]})  # fmt: skip
    by = {(r["strategy"], r["fast_tokens"]): r["retention"] for r in rows}
    return {"value": round(by[("ki_no_vlm", "added")] - by[("ki_no_vlm", "last")], 3), "unit": "retention",
            "command": "kinsul bench fast_placement",
            "goal": "measured, no goal: retention with FAST tokens on added rows minus on the vocabulary's last ids "
                    f"(ki_no_vlm, {steps} steps, an example PaliGemma pretrained {pretrain_steps} steps by transformers)",
            "table": rows}  # fmt: skip
