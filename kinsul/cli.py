"""`kinsul <verb>`: each verb is a plain function; options belong in the config, not in new flags."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kinsul.config import ConfigError, KinsulConfig, load_config, to_yaml


def _split(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[PRESET] [key=value ...]``: a first word without '=' names a preset (ablations/) or a YAML file."""
    args = list(args)
    preset = args.pop(0) if args and "=" not in args[0] else None
    return preset, args


def _config(args: Sequence[str]) -> KinsulConfig:
    preset, overrides = _split(args)
    return load_config(preset, overrides)


def cmd_config(ns: argparse.Namespace) -> None:
    from kinsul.strategies import create
    from kinsul.training.train import effective_strategy

    cfg = _config(ns.overrides)
    print(to_yaml(cfg), end="")
    # the config holds only overrides (loss_weights: {} means the strategy's own): what the run trains with
    strategy = create(cfg.strategy.name, cfg.strategy.options)
    print(
        f"# effective strategy '{strategy.name}' (its defaults with these overrides; logged to MLflow as effective.*):"
    )
    for key, value in effective_strategy(cfg, strategy).items():
        print(f"#   {key.removeprefix('effective.')}: {value}")


def cmd_strategies(ns: argparse.Namespace) -> None:
    """Every registered strategy (built-ins and plugins) with its package, defaults and description, and every
    loss term: what `strategy.name`, `strategy.loss_weights` and `strategy.options` can name."""
    from kinsul.strategies import available, create, losses
    from kinsul.strategies.describe import options_of, version_of
    from kinsul.strategies.plugins import package, registry

    print(f"{'strategy':<18}{'package':<22}{'loss weights':<30}{'vlm_ratio':>9}  {'decoding':<9}description")
    for name, ep in sorted(available().items()):
        source = f"{package(ep)} {version_of(ep)}"
        try:
            s = create(name)
        except Exception as e:  # a broken plugin is listed with its error, not a traceback
            print(f"{name:<18}{source:<22}{type(e).__name__}: {str(e)[:80]}")
            continue
        weights = ", ".join(f"{k} {v:g}" for k, v in s.loss_weights.items())
        print(f"{name:<18}{source:<22}{weights:<30}{s.vlm_ratio:>9g}  {s.decoding:<9}{s.description}")
        options = ", ".join(f"{k}: {t} = {v!r}" for k, (t, v) in options_of(s).items())
        print(f"{'':<18}options (strategy.options.*): {options or 'set by its factory; see its package'}")
    _, conflicts = registry("kinsul.strategies")
    for name, eps in sorted(conflicts.items()):
        print(f"{name:<18}(claimed by {', '.join(package(e) for e in eps)}: name it as package:{name})")
    print(f"\n{'loss term':<18}{'package':<22}entry point")
    for name, ep in sorted(losses.available().items()):
        print(f"{name:<18}{f'{package(ep)} {version_of(ep)}':<22}{ep.value}")


def cmd_data_generate(ns: argparse.Namespace) -> None:
    from kinsul.data.store import generate, open_dataset
    from kinsul.data.summary import summarize

    cfg = _config(ns.overrides)
    for kind in ("robot", "vlm"):
        start = time.perf_counter()
        path = generate(cfg, kind, force=ns.force)
        print(f"\n{kind} dataset: {path}  ({time.perf_counter() - start:.1f} s)")
        print(summarize(kind, open_dataset(path, kind)))


def cmd_data_info(ns: argparse.Namespace) -> None:
    from kinsul.data.store import dataset_dir, open_dataset
    from kinsul.data.summary import summarize

    cfg = _config(ns.overrides)
    for kind in ("robot", "vlm"):
        path = dataset_dir(cfg, kind)
        print(f"\n{kind} dataset: {path}")
        print(summarize(kind, open_dataset(path, kind)))


def cmd_world_gallery(ns: argparse.Namespace) -> None:
    from kinsul.world import KinsulWorldEnv
    from kinsul.world.gallery import gallery

    cfg = _config(ns.overrides)
    path = gallery(KinsulWorldEnv(cfg.world, cfg.concepts), ns.out, per_family=ns.columns, seed=cfg.seed)
    print(f"wrote {path}")


def cmd_pretrain_vlm(ns: argparse.Namespace) -> None:
    from kinsul.pretraining.pretrain import pretrain_vlm
    from kinsul.runs.pretrained import read_meta

    cfg = _config(ns.overrides)
    path = pretrain_vlm(cfg, fresh=ns.fresh)
    meta = read_meta(path)
    print(
        f"\npretrained VLM saved to {path}  ({meta['parameters']:,} parameters, "
        f"{meta['train_seconds_this_run']} s this run)"
    )
    print(f"{'question type':<15}{'probe accuracy':>15}")
    for q, acc in meta["probe_accuracy"].items():
        print(f"{q:<15}{acc:>15.3f}")


def cmd_train(ns: argparse.Namespace) -> None:
    from kinsul import tracking
    from kinsul.training.train import train

    cfg = _config(ns.overrides)
    run_dir = train(cfg, resume=ns.resume)
    print(f"\nrun folder: {run_dir}  (config.yaml, checkpoints/last.ckpt, checkpoints/best.ckpt)")
    print(tracking.tracker(cfg.tracking).where())


def cmd_eval(ns: argparse.Namespace) -> None:
    from kinsul.evaluation.evaluate import evaluate, format_table

    metrics, rates = evaluate(ns.target, ns.overrides)
    print(format_table(metrics, rates))


def cmd_sweep(ns: argparse.Namespace) -> None:
    import optuna

    from kinsul import tracking
    from kinsul.config import load_config
    from kinsul.sweeps.busy import SweepBusy
    from kinsul.sweeps.report import report
    from kinsul.sweeps.run import run_sweep, study_name
    from kinsul.sweeps.spec import split_overrides

    if ns.dry_run:
        return _sweep_dry_run(ns)
    if ns.workers > 1:
        return _sweep_workers(ns)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines: the report says it better
    busy = None
    try:
        study = run_sweep(ns.preset, ns.overrides, resume=ns.resume)
    except SweepBusy as e:  # report what is done, then say why this worker ran nothing
        study, busy = e.study, e
    states = [t.state.name for t in study.trials]
    print(
        f"\nsweep '{study.study_name}': "
        + ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    )
    if busy and "COMPLETE" not in states:
        raise busy  # nothing finished yet: no report to write
    cfg = load_config(ns.preset, split_overrides(ns.overrides)[0])
    out = Path("sweeps") / study_name(ns.preset)
    table = report(ns.preset, ns.overrides, out)
    print(table)
    tracker = tracking.tracker(cfg.tracking)
    parent = study.user_attrs["mlflow_parent_run_id"]
    tracker.describe(parent, f"Sweep `{study.study_name}` report\n\n{table}")
    tracker.log_artifacts(parent, sorted(out.glob("*.*")))  # the table and plots, beside the trials in the UI
    print(
        f"\nreport: {out}/report.md and plots in {out}/  |  browse the runs: kinsul ui  (MLflow at {cfg.tracking.uri})"
    )
    if busy:
        raise busy


def _sweep_workers(ns: argparse.Namespace) -> int:
    """`--workers N`: N `kinsul sweep --resume` processes on this machine, torch threads split between them;
    Optuna's storage hands out the trials (the same command on each machine of a cluster shares the work). Each
    worker logs to sweeps/NAME/worker-K.log; the report is printed once all have ended."""
    import signal
    import subprocess

    from kinsul.sweeps.report import report
    from kinsul.sweeps.run import study_name

    out = Path("sweeps") / study_name(ns.preset)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(ns.overrides)
    if not any(o.startswith("trainer.threads=") for o in overrides):
        overrides.append(f"trainer.threads={max(1, len(os.sched_getaffinity(0)) // ns.workers)}")
    cmd = [sys.executable, "-m", "kinsul", "sweep", ns.preset, "--resume", *overrides]
    workers = []
    for k in range(ns.workers):
        with open(out / f"worker-{k}.log", "a") as log:
            workers.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        print(f"worker {k}: pid {workers[-1].pid}, log {out / f'worker-{k}.log'}")

    def forward(signum, _frame):  # each worker checkpoints its trial and exits; --resume continues them
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [w.wait() for w in workers]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"workers ended with exit codes {codes}")
    try:
        print(report(ns.preset, ns.overrides, out))
    except FileNotFoundError as e:  # nothing finished: the workers' logs say why
        print(e, file=sys.stderr)
    return max(codes)


def _sweep_dry_run(ns: argparse.Namespace) -> None:
    """Every point validated (as the sweep does before its first trial) and listed with its run name; nothing
    is created: no study, no MLflow run, no folder."""
    from kinsul.sweeps.run import child_name, study_name
    from kinsul.sweeps.spec import load_sweep

    spec = load_sweep(ns.preset, list(ns.overrides), fits=True)
    name = study_name(ns.preset)
    if spec.kind == "search":
        print(f"sweep '{name}': a TPE search of {spec.n_trials} trials over")
        for key, dim in spec.search.items():
            print(f"  {key}: {dim.choices if dim.choices is not None else f'[{dim.low}, {dim.high}]'}")
        print(f"runs: {name}-t000 ... {name}-t{spec.n_trials - 1:03d}")
        return
    points = spec.points()
    print(f"sweep '{name}': {len(points)} grid points (objective {spec.objective}, storage {spec.storage})")
    for i, point in enumerate(points):
        values = "  ".join(spec.overrides(point))  # a variant as the keys it sets
        print(f"{i:4d}  {child_name(name, point, i, True):<40}  {values}")


def cmd_report(ns: argparse.Namespace) -> None:
    from kinsul.sweeps.report import report
    from kinsul.sweeps.run import study_name

    print(report(ns.preset, ns.overrides, f"sweeps/{study_name(ns.preset)}"))


def cmd_ui(ns: argparse.Namespace) -> None:
    """The MLflow UI on the run store. Its server and workers run in their own process group, which is stopped
    as a whole on Ctrl-C, SIGTERM or SIGHUP: no orphaned server keeps the port."""
    import signal
    import socket
    import subprocess

    cfg = _config(ns.overrides)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", ns.port))
        except OSError as e:
            raise ConfigError("--port", f"port {ns.port} on 127.0.0.1 is in use ({e.strerror}): stop what holds "
                              "it or pass another, e.g. --port 5001") from None  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    print(f"MLflow UI for {cfg.tracking.uri}: http://127.0.0.1:{ns.port}  (Ctrl-C stops it)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri, "--host", "127.0.0.1",
           "--port", str(ns.port)]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, start_new_session=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)  # a closed terminal: stop the server too, freeing the port
    code = 0
    try:
        code = server.wait()
    except KeyboardInterrupt:
        pass
    finally:  # the whole group: the server's workers outlive their parent otherwise
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    if code:
        raise SystemExit(f"kinsul ui: the MLflow server exited with code {code}")


def cmd_bench(ns: argparse.Namespace) -> None:
    from kinsul.bench import BENCHMARKS, SLOW
    from kinsul.bench.record import record
    from kinsul.fields import unknown_name_message

    names = [n for n in BENCHMARKS if n not in SLOW] if ns.names == ["all"] else ns.names
    for name in names:
        if name not in BENCHMARKS:
            raise ConfigError("bench", unknown_name_message("benchmark", name, [*BENCHMARKS, "all"]))
    for name in names:
        result = record(name, BENCHMARKS[name](), ns.docs)
        ok = {True: "ok", False: "MISSES GOAL", None: ""}[result.get("ok")]
        print(f"{name}: {result['value']} {result.get('unit', '')}  (goal {result.get('goal', '-')}) {ok}")


def cmd_example_vlm(ns: argparse.Namespace) -> None:
    from kinsul.backbones.examples import write_example

    info = write_example(ns.dest, ns.family, pretrain_steps=ns.pretrain_steps)
    print(f"checkpoint folder (transformers files only): {info['model']}\nVQA datasets folder: {info['vqa']}")
    if "transformers_accuracy" in info:
        print(f"probe accuracy measured by transformers (generate + the processor's decoding): "
              f"{info['transformers_accuracy']:.3f}")  # fmt: skip
    print(f"train on it: kinsul train micro strategy.name=ki model.pretrained_path={info['model']} "
          f"data.vqa_path={info['vqa']} data.vqa_type=qtype")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinsul", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, fn, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    def overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="[PRESET] KEY=VALUE",
            help="an optional preset (ablations/NAME.yaml or a YAML path) then dot-list overrides",
        )

    overrides(verb("config", cmd_config, "print the resolved configuration"))
    verb(
        "strategies", cmd_strategies, "list the registered strategies and loss terms (built-ins and plugins)"
    )

    data = sub.add_parser("data", help="generate and inspect datasets").add_subparsers(
        dest="data_verb", required=True
    )
    p = verb("generate", cmd_data_generate, "generate (or reuse) the robot and VLM datasets", data)
    p.add_argument("--force", action="store_true", help="regenerate even if a cached dataset exists")
    overrides(p)
    overrides(verb("info", cmd_data_info, "summarise generated datasets", data))

    world = sub.add_parser("world", help="the embedded world").add_subparsers(
        dest="world_verb", required=True
    )
    p = verb("gallery", cmd_world_gallery, "render a picture of scenes with their instructions", world)
    p.add_argument("--out", default="docs/images/world.png")
    p.add_argument("--columns", type=int, default=4)
    overrides(p)

    p = verb(
        "pretrain-vlm", cmd_pretrain_vlm, "pretrain the VLM backbone on the VLM data (resumes if interrupted)"
    )
    p.add_argument("--fresh", action="store_true", help="discard checkpoints of this config and start over")
    overrides(p)

    p = verb("train", cmd_train, "train a VLA with a strategy (strategy.name=...), logging to MLflow")
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    overrides(p)

    p = verb("eval", cmd_eval, "evaluate a run folder or checkpoint; log the metrics to its MLflow run")
    p.add_argument("target", help="a run folder (runs/NAME) or a checkpoint file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. eval.episodes=20")

    p = verb(
        "sweep",
        cmd_sweep,
        "run an ablation sweep (Optuna grid or TPE search) from a preset with a `sweep:` section",
    )
    p.add_argument("preset", help="a sweep preset under ablations/ (e.g. quick) or a YAML path")
    p.add_argument(
        "--resume", action="store_true", help="finish a killed sweep: run only missing or failed trials"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every point and list them with their run names; run nothing",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="start N worker processes on this machine (torch threads split between them); each resumes the "
        "sweep on its shared storage, so the same command on several machines shares one grid",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    p = verb("report", cmd_report, "print (and write) the comparison table of a sweep")
    p.add_argument("preset")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    p = verb("ui", cmd_ui, "start the MLflow UI on the tracking store, bound to 127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    overrides(p)

    p = verb(
        "example-vlm",
        cmd_example_vlm,
        "write a small PaliGemma or Idefics3 (SmolVLM) checkpoint with its "
        "tokenizer and processor, and a VQA folder, by plain transformers: a bring-your-own-VLM example",
    )
    p.add_argument("family", choices=["paligemma", "idefics3"])
    p.add_argument("dest", help="a new folder: DEST/model and DEST/vqa")
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=0,
        help="pretrain the VLM on the VQA data with transformers' own loss first (0: random init)",
    )

    p = verb("bench", cmd_bench, "run benchmarks and record them in docs/benchmarks.{json,md}")
    p.add_argument("names", nargs="*", default=["all"], help="benchmark names, or 'all' (all but main_job)")
    p.add_argument("--docs", default="docs", help="folder of benchmarks.json and benchmarks.md")
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags may come before or after the KEY=VALUE overrides (`kinsul sweep paper --resume trainer.threads=1`)."""
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(ns, "overrides") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.overrides = [*ns.overrides, *extra]
    return ns


def quiet_libraries() -> None:
    """What a user reads is kinsul's progress bars and tables: the libraries' notices that ask nothing of the user
    (Lightning's tips and device lines, its checkpoint-format info, deprecations inside Lightning, the frozen
    backbone in eval mode that a strategy chose) are turned off; their warnings that do concern a run stay."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # "Creating initial MLflow database tables..."
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    # child loggers: Lightning resets the level of its package logger when it is imported, later than this
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed",
                 "lightning.fabric.utilities.rank_zero", "lightning.pytorch.callbacks.model_summary"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (r".*isinstance\(treespec, LeafSpec\)", r"Found \d+ module\(s\) in eval mode",
                    r"Checkpoint directory .* exists and is not empty", r".*does not have many workers",
                    r".*`weights_only` was not set", r".*was called without a model",
                    r".*is set, but there is no last checkpoint available"):  # fmt: skip
        warnings.filterwarnings("ignore", message=message)


def _machine_error(e: BaseException) -> str | None:
    """One line for an error the machine caused (a full disk, a read-only file system, a store's disk full),
    found anywhere in the exception's chain (SQLAlchemy and MLflow wrap sqlite's own); None otherwise."""
    import errno
    import sqlite3

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (
            errno.ENOSPC,
            errno.EDQUOT,
            errno.EROFS,
            errno.EACCES,
            errno.EPERM,
        ):
            where = f" ('{e.filename}')" if e.filename else ""
            return (f"{e.strerror or e}{where}: free space or permissions under data.root, trainer.runs_dir or the "
                    "tracking store's folder, or point them elsewhere")  # fmt: skip
        if isinstance(e, sqlite3.OperationalError) and any(
            s in str(e) for s in ("disk is full", "readonly database", "disk I/O error")
        ):
            return (f"an SQLite store could not be written ({e}): free space under the folder of tracking.uri or "
                    "sweep.storage, or point it elsewhere")  # fmt: skip
        e = e.__cause__ or e.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    quiet_libraries()
    ns = parse(argv)
    from kinsul.runs.signals import RunInterrupted
    from kinsul.sweeps.busy import SweepBusy

    try:
        code = ns.fn(ns)  # most verbs return None; `sweep --workers` its workers' worst exit code
    except RunInterrupted as e:
        again = {"train": f"kinsul train {' '.join(getattr(ns, 'overrides', []))} --resume",
                 "sweep": f"kinsul sweep {getattr(ns, 'preset', '')} {' '.join(getattr(ns, 'overrides', []))} --resume"}  # fmt: skip
        resume = again.get(ns.verb, "the same command with --resume").replace("  ", " ")
        print(f"kinsul: interrupted by {e.signal} at step {e.step}; "
              f"{f'checkpoint {e.checkpoint}' if e.checkpoint else 'no checkpoint yet'}; resume: {resume}",
              file=sys.stderr)  # fmt: skip
        return e.exit_code
    except SweepBusy as e:
        print(f"kinsul: {e}", file=sys.stderr)
        return e.exit_code
    except ConfigError as e:
        print(f"kinsul: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from kinsul.runs.checkpoints import NON_FINITE, CheckpointSaveError

        if isinstance(e, NON_FINITE):  # a distinct code: the numbers, not the input, went wrong
            print(f"kinsul: {type(e).__name__}: {e}", file=sys.stderr)
            return 3
        if isinstance(e, CheckpointSaveError):
            print(f"kinsul: {type(e).__name__}: {e}", file=sys.stderr)
            return 4
        from kinsul.data.batch import BatchShapeError
        from kinsul.data.lerobot import LeRobotError
        from kinsul.data.store import DatasetError
        from kinsul.models.backbone import BackboneError
        from kinsul.models.build import ShapeMismatchError
        from kinsul.runs.checkpoints import CheckpointError
        from kinsul.runs.pretrained import CorruptVLMError, PretrainedVLMNotFound
        from kinsul.strategies.base import StrategyError
        from kinsul.tracking import RunFileError

        if isinstance(
            e,
            DatasetError
            | LeRobotError
            | BackboneError
            | ShapeMismatchError
            | PretrainedVLMNotFound
            | CorruptVLMError
            | StrategyError
            | CheckpointError
            | FileExistsError
            | FileNotFoundError
            | BatchShapeError
            | RunFileError,
        ):
            print(f"kinsul: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.filename:  # a folder that cannot be written, a full disk: one line
            print(f"kinsul: cannot use '{e.filename}': {e.strerror}", file=sys.stderr)
            return 2
        said = _machine_error(e)
        if said:
            print(f"kinsul: {said}", file=sys.stderr)
            return 2
        raise
    return code if type(code) is int else 0  # a verb returning a bool or a path exits 0


if __name__ == "__main__":
    sys.exit(main())
