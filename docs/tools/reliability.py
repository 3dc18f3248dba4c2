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
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from kinsul.cli import main

_SEEN: dict[Path, tuple[tuple[int, int, int], str]] = {}  # path -> ((size, mtime, inode), sha1): hash once


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "mlartifacts" in p.parts or p.suffix == ".db":
            continue
        st = p.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if _SEEN.get(p, (None,))[0] != key:
            _SEEN[p] = (key, hashlib.sha1(p.read_bytes()).hexdigest())
        out[str(p.relative_to(root))] = _SEEN[p][1]
    return out


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
        # -- more values, names and paths (issue 30: the battery reaches 100) --------------------------------
        ("override value that is broken YAML", ["config", "trainer.lr=[1,"]),
        ("zero batch size", ["config", "trainer.batch_size=0"]),
        ("negative gradient clip", ["config", "trainer.grad_clip=-1"]),
        ("NaN strategy option", ["config", "strategy.options.kv_alpha=nan"]),
        ("negative VLM share", ["config", "strategy.name=ki", "strategy.options.vlm_ratio=-0.1"]),
        ("float for an integer", ["config", "trainer.max_steps=1e3"]),
        ("image mean of the wrong length", ["config", "model.image_mean=[0.5]"]),
        ("unknown VLM domain", ["config", "data.vlm_domain=mars"]),
        ("negative location bins", ["config", "pretrain.location_bins=-1"]),
        ("FSDP on a CPU machine", ["train", *micro, "trainer.distributed=fsdp", "trainer.accelerator=cpu"]),
        (
            "more devices than the machine has",
            ["train", *micro, "trainer.accelerator=cpu", "trainer.devices=4096"],
        ),
        ("empty run name", ["train", *micro, "trainer.run_name="]),
        ("run name with a separator", ["train", *micro, "trainer.run_name=a/b"]),
        ("run name with a backslash", ["train", *micro, "trainer.run_name=a\\b"]),
        ("run name '.'", ["train", *micro, "trainer.run_name=."]),
        ("run name of 300 characters", ["train", *micro, f"trainer.run_name={'r' * 300}"]),
        (
            "tracking store under a file",
            ["train", *micro, f"tracking.uri=sqlite:///{root / 'crafted.ckpt' / 'm.db'}"],
        ),
        (
            "sweep storage under a file",
            ["sweep", str(root / "mini.yaml"), f"sweep.storage=sqlite:///{root / 'crafted.ckpt' / 'o.db'}"],
        ),
        # -- corrupted stores and run files -----------------------------------------------------------------
        (
            "MLflow store that is not a database",
            ["train", *micro[:3], f"tracking.uri=sqlite:///{root / 'garbage.db'}", "trainer.run_name=g1"],
        ),
        (
            "MLflow store that is another program's database",
            ["train", *micro[:3], f"tracking.uri=sqlite:///{root / 'foreign.db'}", "trainer.run_name=g2"],
        ),
        (
            "Optuna store that is not a database",
            [
                "sweep",
                str(root / "mini.yaml"),
                f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                f"sweep.storage=sqlite:///{root / 'garbage.db'}",
            ],
        ),
        (
            "Optuna store that is another program's database",
            [
                "sweep",
                str(root / "mini.yaml"),
                f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                f"sweep.storage=sqlite:///{root / 'foreign.db'}",
            ],
        ),
        (
            "report from an Optuna store that is not a database",
            [
                "report",
                "quick",
                f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                f"sweep.storage=sqlite:///{root / 'garbage.db'}",
            ],
        ),
        (
            "corrupted FAST tokenizer cache",
            [
                "train",
                "micro",
                f"data.root={root / 'badfast'}",
                f"trainer.runs_dir={root / 'runs'}",
                "tracking.enabled=false",
                "strategy.name=ki",
                "trainer.run_name=badfast",
            ],
        ),
        ("run folder with a truncated config.yaml", ["eval", str(root / "trunc-config")]),
        ("run folder whose config.yaml has an unknown key", ["eval", str(root / "odd-config")]),
        (
            "--resume with a garbled MLflow run id",
            ["train", *micro, "trainer.run_name=badid", "trainer.curve_every=0", "--resume"],
        ),
        (
            "--resume of a zero-byte last.ckpt",
            ["train", *micro, "trainer.run_name=zero", "trainer.curve_every=0", "--resume"],
        ),
        ("eval of a truncated best.ckpt", ["eval", str(root / "trunc-best"), "eval.checkpoint=best"]),
        (
            "cached VLM with garbled metadata",
            [
                "train",
                "micro",
                f"data.root={root / 'badmeta'}",
                f"trainer.runs_dir={root / 'runs'}",
                "tracking.enabled=false",
                "trainer.run_name=badmeta",
            ],
        ),
        # -- hostile plugins (a package on sys.path with entry points) --------------------------------------
        (
            "plugin registering the built-in 'naive'",
            ["config", "micro", "strategy.name=naive"],
            {"plugin": "shadow"},
        ),
        (
            "plugin registering the loss term 'fm'",
            ["config", "micro", "strategy.name=naive"],
            {"plugin": "shadow_loss"},
        ),
        ("two plugins registering one name", ["config", "micro", "strategy.name=twin"], {"plugin": "twins"}),
        ("plugin that exits on import", ["config", "micro", "strategy.name=quitter"], {"plugin": "quitter"}),
        ("plugin that raises on import", ["config", "micro", "strategy.name=raiser"], {"plugin": "raiser"}),
        (
            "plugin whose entry point names nothing",
            ["config", "micro", "strategy.name=ghost"],
            {"plugin": "ghost"},
        ),
        (
            "plugin factory returning a non-strategy",
            ["config", "micro", "strategy.name=notone"],
            {"plugin": "notone"},
        ),
    ]


def system_cases(root: Path) -> list[tuple[str, list[str], dict]]:
    """Inputs that need the machine's help: folders nobody may write (`chattr +i`, root only), a full disk (a
    small tmpfs, `mount`), signals to a running process, hostile plugins on sys.path."""
    data, runs, uri = (
        f"data.root={root / 'data'}",
        f"trainer.runs_dir={root / 'runs'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
    )
    full = root / "full"
    long_run = ["trainer.max_steps=100000", "trainer.checkpoint_every=2", "trainer.curve_every=0"]
    sweep = ["sweep", str(root / "mini.yaml"), data, runs, uri, "trainer.max_steps=100000"]
    sweep1 = ["sweep", str(root / "mini1.yaml"), data, runs, uri, "trainer.max_steps=100000"]
    return [
        ("runs folder marked immutable", ["train", "micro", data, f"trainer.runs_dir={root / 'immut-runs'}", uri, "trainer.run_name=i1"], {"immutable": "immut-runs"}),
        ("checkpoints folder marked immutable, resumed for more steps", ["train", "micro", data, f"trainer.runs_dir={root / 'immut-ckpt'}", uri, "trainer.run_name=good", "trainer.max_steps=4", "trainer.curve_every=0", "--resume"], {"immutable": "immut-ckpt/good/checkpoints", "changes": ["immut-ckpt/good/config.yaml"]}),
        ("MLflow store marked immutable", ["train", "micro", data, runs, f"tracking.uri=sqlite:///{root / 'immut.db'}", "trainer.run_name=i3"], {"immutable": "immut.db"}),
        ("Optuna store marked immutable", [*sweep, f"sweep.storage=sqlite:///{root / 'immut-optuna.db'}"], {"immutable": "immut-optuna.db"}),
        ("data folder marked immutable", ["train", "micro", f"data.root={root / 'immut-data'}", runs, uri, "trainer.run_name=i5"], {"immutable": "immut-data"}),
        ("runs folder on a full disk", ["train", "micro", data, f"trainer.runs_dir={full / 'runs'}", uri, "trainer.run_name=f1"], {"full": 3 << 19}),
        ("MLflow store on a full disk", ["train", "micro", data, runs, f"tracking.uri=sqlite:///{full / 'm.db'}", "trainer.run_name=f2"], {"full": 0}),
        ("data folder on a full disk", ["train", "micro", f"data.root={full / 'data'}", runs, uri, "trainer.run_name=f3"], {"full": 0}),
        ("SIGTERM during training", ["train", "micro", data, runs, uri, "trainer.run_name=sigterm", *long_run], {"signal": "SIGTERM", "wait": "runs/sigterm/checkpoints/last.ckpt", "expect": 143}),
        ("SIGINT during training", ["train", "micro", data, runs, uri, "trainer.run_name=sigint", *long_run], {"signal": "SIGINT", "wait": "runs/sigint/checkpoints/last.ckpt", "expect": 130}),
        ("SIGTERM during a sweep", sweep, {"signal": "SIGTERM", "wait": "runs/mini-*/checkpoints/last.ckpt", "expect": 143}),
        ("--resume right after a worker was killed (SIGKILL)", [*sweep1, "--resume"], {"killed_first": [*sweep1, "--resume"], "wait": "runs/mini1-*/checkpoints/last.ckpt", "expect": 0}),
    ]  # fmt: skip


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
    # corrupted stores: random bytes, and a valid SQLite file of another program
    (root / "garbage.db").write_bytes(os.urandom(8192))
    with sqlite3.connect(root / "foreign.db") as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO notes (body) VALUES ('a user note')")
    shutil.copytree(root / "data", root / "badfast")
    code, said = run_case(["train", "micro", f"data.root={root / 'badfast'}", f"trainer.runs_dir={root / 'prep'}",
                           "tracking.enabled=false", "strategy.name=ki", "trainer.max_steps=1",
                           "trainer.curve_every=0", "trainer.run_name=fastprep"], root)  # fmt: skip
    if code != 0:
        raise RuntimeError(f"setting up the FAST cache: exited {code}: {said}")
    next((root / "badfast").rglob("fast.json")).write_text('{"vocab": [1, 2')
    good = root / "runs" / "good"
    for name in ("trunc-config", "odd-config", "trunc-best"):
        shutil.copytree(good, root / name)
    config = (good / "config.yaml").read_text()
    (root / "trunc-config" / "config.yaml").write_text(config[: len(config) // 2])
    (root / "odd-config" / "config.yaml").write_text(
        config.replace("trainer:\n", "trainer:\n  max_stepz: 3\n", 1)
    )
    best = root / "trunc-best" / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    for name in ("badid", "zero"):
        shutil.copytree(good, root / "runs" / name)
        (root / "runs" / name / "config.yaml").write_text(
            config.replace("run_name: good", f"run_name: {name}")
        )
    (root / "runs" / "badid" / "mlflow_run_id").write_text("not-a-run-id\x00\n")
    (root / "runs" / "zero" / "checkpoints" / "last.ckpt").write_bytes(b"")
    shutil.copytree(root / "data", root / "badmeta")
    next((root / "badmeta").rglob("kinsul_vlm.json")).write_text("{ not json")
    plugins(root / "plugins")
    # where the machine allows it: folders that cannot be written, and a disk that is full
    for name in ("immut-runs", "immut-data"):
        (root / name).mkdir()
    shutil.copytree(good, root / "immut-ckpt" / "good")
    shutil.copy(root / "mlflow.db", root / "immut.db")
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{root / 'immut-optuna.db'}")
    (root / "full").mkdir()
    (root / "mini.yaml").write_text("base: micro\nsweep:\n  grid: {strategy.name: [naive, stop_grad], seed: [0]}\n"
                                    f"  storage: sqlite:///{root / 'mini-optuna.db'}\n"
                                    "trainer: {max_steps: 2, checkpoint_every: 2, curve_every: 0}\n")  # fmt: skip
    (root / "mini1.yaml").write_text("base: micro\nsweep:\n  grid: {strategy.name: [naive], seed: [0]}\n"
                                    f"  storage: sqlite:///{root / 'mini1-optuna.db'}\n"
                                    "trainer: {max_steps: 2, checkpoint_every: 2, curve_every: 0}\n")  # fmt: skip


PLUGINS = {  # name -> (entry points, module source)
    "shadow": (
        "[kinsul.strategies]\nnaive = shadow:naive\n",
        "def naive(**options):\n    raise RuntimeError\n",
    ),
    "shadow_loss": ("[kinsul.loss_terms]\nfm = shadow_loss:Fm\n", "class Fm:\n    pass\n"),
    "twins": ("[kinsul.strategies]\ntwin = twins:twin\n", "def twin(**options):\n    raise RuntimeError\n"),
    "twins_too": (
        "[kinsul.strategies]\ntwin = twins_too:twin\n",
        "def twin(**options):\n    raise RuntimeError\n",
    ),
    "quitter": ("[kinsul.strategies]\nquitter = quitter:make\n", "import sys\nsys.exit(3)\n"),
    "raiser": (
        "[kinsul.strategies]\nraiser = raiser:make\n",
        "raise ImportError('no module named torch_xla')\n",
    ),
    "ghost": ("[kinsul.strategies]\nghost = ghost:nothing_here\n", "x = 1\n"),
    "notone": ("[kinsul.strategies]\nnotone = notone:make\n", "def make(**options):\n    return 42\n"),
}


def plugins(root: Path) -> None:
    """Each hostile plugin as an installed distribution in its own folder (put on sys.path by its case)."""
    for name, (eps, source) in PLUGINS.items():
        where = root / ("twins" if name == "twins_too" else name)
        info = where / f"{name}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n"
        )
        (info / "entry_points.txt").write_text(eps)
        (where / f"{name}.py").write_text(source)


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


def run_subprocess(argv: list[str], root: Path, opts: dict) -> tuple[int | str, str]:
    """A real process, signalled once the file ``opts['wait']`` (a glob under root) exists: how it ended."""
    import signal
    import time

    def start(args: list[str], log: Path) -> subprocess.Popen:
        with open(log, "w") as err:  # a file, not a pipe: an unread pipe would block the child
            return subprocess.Popen([sys.executable, "-m", "kinsul.cli", *args], cwd=root, stdout=subprocess.DEVNULL,
                                    stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip

    def wait_for(pattern: str, proc: subprocess.Popen) -> None:
        deadline = time.time() + 300
        while not list(root.glob(pattern)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)

    log = (
        Path(tempfile.gettempdir()) / f"kinsul-signal-{os.getpid()}.stderr"
    )  # outside root: not a given file
    if "killed_first" in opts:  # a worker killed outright, then this input at once
        first = start(opts["killed_first"], log.with_suffix(".killed"))
        wait_for(opts["wait"], first)
        first.kill()
        first.wait()
        return run_case(argv, root)
    proc = start(argv, log)
    wait_for(opts["wait"], proc)
    proc.send_signal(getattr(signal, opts["signal"]))
    proc.wait(timeout=300)
    err = log.read_text()
    if "Traceback" in err:
        return "TRACEBACK", err.strip().splitlines()[-1]
    said = [ln for ln in err.splitlines() if ln.startswith("kinsul")]
    return proc.returncode, said[-1] if said else (err.strip().splitlines() or [""])[-1]


@contextlib.contextmanager
def machine(root: Path, opts: dict):
    """Put a case's machine state in place (and take it away after); None when the machine cannot."""
    import importlib

    if "immutable" in opts:
        target = root / opts["immutable"]
        if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode:
            yield "skipped: `chattr +i` needs root on a file system that supports it"
            return
        try:
            yield None
        finally:
            subprocess.run(["chattr", "-i", str(target)], check=True)
    elif "full" in opts:
        full = root / "full"
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(full)], capture_output=True
        ).returncode:
            yield "skipped: mounting a small tmpfs needs root"
            return
        try:  # fill the disk up to the case's free bytes
            with open(full / ".filler", "wb") as f, contextlib.suppress(OSError):
                f.write(b"\0" * max(shutil.disk_usage(full).free - opts["full"], 0))
            yield None
        finally:
            subprocess.run(
                ["umount", "--lazy", str(full)], check=True
            )  # an in-process store may hold a file open
    elif "plugin" in opts:
        where = str(root / "plugins" / opts["plugin"])
        sys.path.insert(0, where)
        importlib.invalidate_caches()
        try:
            yield None
        finally:
            sys.path.remove(where)
            for name in PLUGINS:
                sys.modules.pop(name, None)
    else:
        yield None


def main_(argv: list[str]) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        help="run only the cases whose name matches this regular expression (the page is not rewritten)",
    )
    only = parser.parse_args(argv).only
    root = Path(tempfile.mkdtemp(prefix="kinsul-reliability-"))
    prepare(root)
    rows, bad = [], 0
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        for name, argv, *more in [*cases(root), *system_cases(root)]:
            if only and not re.search(only, name):
                continue
            opts = more[0] if more else {}
            start = time.perf_counter()
            argv = [a.replace("{held}", str(held.getsockname()[1])) for a in argv]
            before = _digest(root)
            with machine(root, opts) as skipped:
                if skipped:
                    rows.append(f"| {len(rows) + 1} | {name} | | {skipped} | | skipped |")
                    continue
                if "signal" in opts or "killed_first" in opts:
                    code, said = run_subprocess(argv, root, opts)
                else:
                    code, said = run_case(argv, root)
            # a case may change a file it names: the resumed run records its raised budget before its save fails
            lost = sorted(k for k, v in before.items() if _digest(root).get(k) != v and "truncated" not in k
                          and k not in opts.get("changes", ()))  # fmt: skip
            expected = code == opts["expect"] if "expect" in opts else code not in (0, "TRACEBACK")
            ok = expected and not lost and not (root / "pwned.txt").exists()
            bad += not ok
            print(f"{len(rows) + 1:3d} {'ok' if ok else 'NO'} {time.perf_counter() - start:6.1f}s {name}: {code} {said[:150]} {lost or ''}",
                  file=sys.__stderr__)  # fmt: skip
            shown = " ".join(a if str(root) not in a else a.replace(str(root), "$TMP") for a in argv)
            said = said.replace(str(root), "$TMP").replace("|", "\\|")
            rows.append(f"| {len(rows) + 1} | {name} | `kinsul {shown}` | {said} | {code} | {'ok' if ok else 'NO'}"
                        f"{' (changed: ' + ', '.join(lost) + ')' if lost else ''} |")  # fmt: skip
    page = Path("docs/reliability.md")
    if only:
        shutil.rmtree(root, ignore_errors=True)
        return 1 if bad else 0
    page.write_text(HEADER + "\n".join(rows) + f"\n\n{len(rows)} inputs, {bad} not handled.\n")
    shutil.rmtree(root, ignore_errors=True)
    print(f"{len(rows)} inputs, {bad} not handled; wrote {page}")
    return 1 if bad else 0


HEADER = """# Reliability: bad inputs

Every input below was run through the real `kinsul` CLI by `python docs/tools/reliability.py`, which rewrites
this page. Each runs in a temporary folder holding micro datasets and a trained micro run (`$TMP`); `ok` means
it exited non-zero with one line and no traceback (a signal: 143 or 130; a resumed sweep worker with nothing left
to run: 0 and the line saying why), and every file it was given (checkpoints, configs, datasets, stores) is
byte-identical afterwards. Immutable folders (`chattr +i`) and full disks (a 4 MiB tmpfs) need root; without it
those rows say skipped. Beyond this table, interrupted work resumes: `kinsul train --resume`
continues from `last.ckpt` exactly, `kinsul sweep --resume` re-queues a dead worker's trial and marks its MLflow
run KILLED, and a non-finite loss stops training before it reaches the weights or a checkpoint.

| # | input | command | what kinsul says | exit | ok |
|---|---|---|---|---|---|
"""

if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
