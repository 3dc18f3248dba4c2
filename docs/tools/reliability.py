"""Try every bad input of docs/reliability.md through the real CLI (in process) and rewrite that page with what
kinsul said and its exit code. Run from the repository root: `python docs/tools/reliability.py`.

Each case runs in a fresh temporary folder holding micro datasets and one trained micro run, so the inputs
that need a checkpoint, a cache file or a run folder find one. A case passes when it exits non-zero with no
traceback and leaves the files it was given (checkpoints, config, stores) byte-identical."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import socket
import sys
import tempfile
import traceback
from pathlib import Path

from kinsul.cli import main


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "mlartifacts" not in p.parts and p.suffix != ".db"}  # fmt: skip


class Crafted:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def cases(root: Path) -> list[tuple[str, list[str]]]:
    micro = ["micro", f"data.root={root / 'data'}", f"trainer.runs_dir={root / 'runs'}",
             f"tracking.uri=sqlite:///{root / 'mlflow.db'}"]  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    return [
        ("unknown key", ["config", "trainer.max_step=10"]),
        ("wrong type", ["config", "trainer.max_steps=ten"]),
        ("negative step budget", ["config", "trainer.max_steps=-5"]),
        ("zero learning rate", ["config", "trainer.lr=0"]),
        ("unknown strategy", ["config", "strategy.name=kii"]),
        ("strategy option out of range", ["config", "strategy.options.kv_alpha=5"]),
        ("unknown strategy option", ["config", "strategy.options.kv_alpha=0.5", "strategy.options.bogus=1"]),
        ("option of another strategy", ["config", "strategy.name=anchored", "strategy.options.kv_alpha=0.5"]),
        ("NaN loss weight", ["config", "strategy.loss_weights.fm=nan"]),
        ("negative loss weight", ["config", "strategy.loss_weights.fm=-1"]),
        ("overflowing loss weight", ["config", "strategy.loss_weights.fm=1e39"]),
        (
            "weight for a loss the strategy lacks",
            ["config", "strategy.name=naive", "strategy.loss_weights.vlm=1"],
        ),
        (
            "FAST decoding without FAST loss",
            ["config", "strategy.name=naive", "strategy.options.decoding=fast"],
        ),
        ("VLM share of 1", ["config", "strategy.name=ki", "strategy.options.vlm_ratio=1.0"]),
        (
            "delayed unfreeze at a negative step",
            ["config", "strategy.name=delayed_unfreeze", "strategy.options.unfreeze_at=-1"],
        ),  # fmt: skip
        ("file:// tracking URI", ["config", "tracking.uri=file:///tmp/mlruns"]),
        ("plain-folder tracking URI", ["config", "tracking.uri=./mlruns"]),
        ("unknown preset", ["config", "nosuchpreset"]),
        ("override without '='", ["config", "micro", "trainer.max_steps"]),
        ("unknown task family", ["config", "world.tasks=[fly]"]),
        ("unknown headline task", ["config", "eval.headline_tasks=[fly]"]),
        ("min objects above max", ["config", "world.min_objects=3", "world.max_objects=2"]),
        ("unknown model size", ["config", "model.size=huge"]),
        ("unknown precision", ["config", "trainer.precision=fp8"]),
        ("zero chunk size", ["config", "data.chunk_size=0"]),
        ("unknown held-out colour", ["config", "concepts.heldout_colours=[teal]"]),
        ("zero evaluation episodes", ["config", "eval.episodes=0"]),
        ("zero validation interval", ["config", "trainer.val_every=0"]),
        (
            "batch too small for a VLM share",
            ["train", *micro, "strategy.name=ki", "trainer.batch_size=1", "trainer.run_name=b1"],
        ),  # fmt: skip
        (
            "unreachable tracking server",
            ["train", *micro, f"tracking.uri=http://127.0.0.1:{closed}", "trainer.run_name=unreach"],
        ),  # fmt: skip
        (
            "pretrained VLM path that does not exist",
            ["train", *micro, "model.pretrained_path=/nonexistent/vlm", "trainer.run_name=nopre"],
        ),  # fmt: skip
        ("a run that exists, without --resume", ["train", *micro, "trainer.run_name=good"]),
        (
            "--resume with another strategy",
            ["train", *micro, "trainer.run_name=good", "strategy.name=ki", "--resume"],
        ),
        (
            "runs folder that cannot be created",
            ["train", *micro, "trainer.runs_dir=/proc/kinsul-runs", "trainer.run_name=ro"],
        ),  # fmt: skip
        ("eval of a missing path", ["eval", str(root / "runs" / "nope")]),
        ("eval of a checkpoint that would run code", ["eval", str(root / "crafted.ckpt")]),
        ("eval of a corrupted last.ckpt", ["eval", str(root / "corrupt" / "checkpoints" / "last.ckpt")]),
        ("eval of a run folder without checkpoints", ["eval", str(root / "empty-run")]),
        (
            "truncated cached dataset file",
            [
                "train",
                *micro[:1],
                f"data.root={root / 'truncated'}",
                f"trainer.runs_dir={root / 'runs'}",
                "tracking.enabled=false",
                "trainer.run_name=trunc",
            ],
        ),  # fmt: skip
        ("unknown sweep preset", ["sweep", "nosuch"]),
        (
            "PostgreSQL sweep storage without its driver",
            ["sweep", "quick", "sweep.storage=postgresql://u@127.0.0.1/db"],
        ),
        ("sweep storage that is not a URL", ["sweep", "quick", "sweep.storage=optuna.db"]),
        ("sweep with tracking turned off", ["sweep", "quick", "tracking.enabled=false"]),
        (
            "report of a sweep that never ran",
            [
                "report",
                "quick",
                f"tracking.uri=sqlite:///{root / 'none.db'}",
                f"sweep.storage=sqlite:///{root / 'none-optuna.db'}",
            ],
        ),  # fmt: skip
        ("unknown benchmark", ["bench", "nosuch"]),
        # -- where kinsul writes, and what a config may read (issue 30) ------------------------------------
        ("run name climbing out of runs_dir", ["train", *micro, "trainer.run_name=../../x"]),
        ("absolute run name", ["train", *micro, f"trainer.run_name={root / 'elsewhere'}"]),
        ("run name '..'", ["train", *micro, "trainer.run_name=.."]),
        ("run name with a control character", ["train", *micro, "trainer.run_name=a\tb"]),
        (
            "a folder kinsul did not make",
            ["train", *micro, f"trainer.runs_dir={root}", "trainer.run_name=theirs"],
        ),
        ("environment interpolation", ["config", "trainer.run_name=${oc.env:HOME}"]),
        ("interpolation of a missing key", ["config", "trainer.lr=${nosuch.key}"]),
        ("--resume with no checkpoint", ["train", *micro, "trainer.run_name=never-ran", "--resume"]),
        # -- values checked at load time, NaN included ------------------------------------------------------
        ("NaN learning rate", ["config", "trainer.lr=nan"]),
        ("negative weight decay", ["config", "trainer.weight_decay=-5"]),
        ("NaN gradient clip", ["config", "trainer.grad_clip=nan"]),
        ("unknown accelerator", ["config", "trainer.accelerator=tpu"]),
        ("negative seed", ["config", "seed=-1"]),
        ("NaN image std", ["config", "model.image_std=[nan,1,1]"]),
        ("unknown FAST placement", ["config", "model.fast_tokens=middle"]),
        ("unknown backbone family", ["config", "model.family=llava"]),
        # -- corrupted weights ------------------------------------------------------------------------------
        (
            "VLM weights with flipped bytes",
            [
                "train",
                "micro",
                f"data.root={root / 'flipped'}",
                f"trainer.runs_dir={root / 'runs'}",
                "trainer.run_name=flipped",
                f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
            ],
        ),
        # -- bring your own VLM and VQA data (issue 25) -----------------------------------------------------
        ("VLM folder that does not exist", ["train", *micro, f"model.pretrained_path={root / 'nowhere'}"]),
        ("VLM folder of an unknown family", ["train", *micro, f"model.pretrained_path={root / 'llava'}"]),
        (
            "bare VLM folder too small for the world tokenizer",
            ["train", *micro, f"model.pretrained_path={root / 'bare'}"],
        ),
        (
            "VQA folder that does not exist",
            ["train", *micro, "strategy.name=ki", f"data.vqa_path={root / 'novqa'}"],
        ),
        (
            "VQA folder without the question column",
            ["train", *micro, "strategy.name=ki", f"data.vqa_path={root / 'vqa'}", "data.vqa_question=q"],
        ),
        (
            "VQA folder without the probe split",
            [
                "train",
                *micro,
                "strategy.name=ki",
                f"data.vqa_path={root / 'vqa'}",
                "data.vqa_probe_split=heldout",
            ],
        ),
        ("UI on a port in use", ["ui", f"tracking.uri=sqlite:///{root / 'mlflow.db'}", "--port", "{held}"]),
    ]


def prepare(root: Path) -> None:
    base = ["micro", f"data.root={root / 'data'}", f"trainer.runs_dir={root / 'runs'}",
            f"tracking.uri=sqlite:///{root / 'mlflow.db'}"]  # fmt: skip
    for argv in (["pretrain-vlm", "micro", f"data.root={root / 'data'}"],
                 ["train", *base, "trainer.run_name=good", "trainer.max_steps=2", "trainer.curve_every=0"]):  # fmt: skip
        code, said = run_case(argv, root)
        if code != 0:
            raise RuntimeError(f"setting up: kinsul {' '.join(argv)} exited {code}: {said}")
    with open(root / "crafted.ckpt", "wb") as f:
        pickle.dump({"state_dict": Crafted()}, f)
    (root / "corrupt" / "checkpoints").mkdir(parents=True)
    (root / "corrupt" / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    shutil.copy(root / "runs" / "good" / "config.yaml", root / "corrupt" / "config.yaml")
    (root / "empty-run").mkdir()
    shutil.copy(root / "runs" / "good" / "config.yaml", root / "empty-run" / "config.yaml")
    (root / "theirs").mkdir()
    (root / "theirs" / "config.yaml").write_text("# a user's own file\n")
    shutil.copytree(root / "data", root / "flipped")
    weights = next((root / "flipped").rglob("model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-64:-60] = b"\xff\xfe\xfd\xfc"
    weights.write_bytes(bytes(data))
    (root / "llava").mkdir()
    (root / "llava" / "config.json").write_text('{"model_type": "llava"}')
    from kinsul.backbones import FAMILIES
    from kinsul.backbones.examples import DIMS, write_vqa

    FAMILIES["paligemma"].build(DIMS["paligemma"], 300, 64, 5).save_pretrained(root / "bare")
    write_vqa(root / "vqa", n_train=16, n_test=8)
    shutil.copytree(root / "data", root / "truncated")
    arrow = max((root / "truncated").rglob("*.arrow"), key=lambda p: p.stat().st_size)
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 3])


def run_case(argv: list[str], cwd: Path) -> tuple[int | str, str]:
    err = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code: int | str = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
                if not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except BaseException:
                code = "TRACEBACK"
                traceback.print_exc()
    finally:
        os.chdir(old)
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not ln.startswith(("  ", "\x1b"))]
    if code == "TRACEBACK":
        return code, lines[-1] if lines else ""
    said = [ln for ln in lines if ln.startswith(("kinsul", "usage:")) or "error" in ln.lower()]
    return code, (said[-1] if said else (lines[-1] if lines else ""))


def main_() -> int:
    root = Path(tempfile.mkdtemp(prefix="kinsul-reliability-"))
    prepare(root)
    rows, bad = [], 0
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        for name, argv in cases(root):
            argv = [a.replace("{held}", str(held.getsockname()[1])) for a in argv]
            before = _digest(root)
            code, said = run_case(argv, root)
            lost = sorted(k for k, v in before.items() if _digest(root).get(k) != v and "truncated" not in k)
            ok = code not in (0, "TRACEBACK") and not lost and not (root / "pwned.txt").exists()
            bad += not ok
            shown = " ".join(a if str(root) not in a else a.replace(str(root), "$TMP") for a in argv)
            said = said.replace(str(root), "$TMP").replace("|", "\\|")
            rows.append(f"| {len(rows) + 1} | {name} | `kinsul {shown}` | {said} | {code} | {'ok' if ok else 'NO'}"
                        f"{' (changed: ' + ', '.join(lost) + ')' if lost else ''} |")  # fmt: skip
    page = Path("docs/reliability.md")
    page.write_text(HEADER + "\n".join(rows) + f"\n\n{len(rows)} inputs, {bad} not handled.\n")
    shutil.rmtree(root, ignore_errors=True)
    print(f"{len(rows)} inputs, {bad} not handled; wrote {page}")
    return 1 if bad else 0


HEADER = """# Reliability: bad inputs

Every input below was run through the real `kinsul` CLI by `python docs/tools/reliability.py`, which rewrites
this page. Each runs in a temporary folder holding micro datasets and a trained micro run (`$TMP`); `ok` means
it exited non-zero with one line and no traceback, and every file it was given (checkpoints, configs, datasets,
stores) is byte-identical afterwards. Beyond this table, interrupted work resumes: `kinsul train --resume`
continues from `last.ckpt` exactly, `kinsul sweep --resume` re-queues a dead worker's trial and marks its MLflow
run KILLED, and a non-finite loss stops training before it reaches the weights or a checkpoint.

| # | input | command | what kinsul says | exit | ok |
|---|---|---|---|---|---|
"""

if __name__ == "__main__":
    sys.exit(main_())
