"""The run-level sections of the root configuration (pretraining, the training loop, tracking, evaluation):
the settings of the jobs that assemble components, not of any one component."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kinsul.fields import FieldValueError, check_choice, check_range
from kinsul.world.config import TASK_FAMILIES
from kinsul.world.language import QTYPES


@dataclass(frozen=True)
class PretrainConfig:
    """VLM pretraining on the generated VLM data (next-token loss on answers)."""

    steps: int = 3100  # optimizer steps of stage 2 (the VLM on question answering)
    batch_size: int = 64  # questions per step
    # Stage-2 questions: "rendered" fresh every step (never repeated) or "stored" (the VLM data's train split)
    questions: str = "rendered"
    length_groups: int = 4  # stage-2 batches drawn together and grouped by answer length (1: independent)
    # Stage-2 sampling weight per question type (unnamed types weigh 1, 0 leaves a type out). Relation questions
    # are two-hop (find the anchor, then the one object beside it, then name it) and learn last; captions are
    # long, not a probe goal, and cost a fifth of a batch's tokens at weight 1.
    qtype_weights: dict[str, float] = field(
        default_factory=lambda: {"relation": 2.0, "count": 1.5, "caption": 0.25}
    )
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 200  # linear warm-up, then cosine decay to zero
    weight_decay: float = 0.01
    # Object-count curriculum: before curriculum[k] steps, scenes have at most k + 1 objects; then all.
    curriculum: list[int] = field(default_factory=lambda: [300, 800, 1500])
    # Stage 1: the vision tower alone on freshly rendered scenes with object labels (0 skips it)
    vision_steps: int = 3200
    vision_batch_size: int = 64  # rendered images per stage-1 step
    vision_lr: float = 1e-3  # peak AdamW learning rate of stage 1 (same warm-up and cosine decay)
    freeze_vision: bool = True  # stage 2 keeps stage 1's tower and projector fixed (needs vision_steps > 0)
    # Stage-1 location bins per axis that the tower learns to read out (0: no location head). None: the
    # domain's own (world: data.loc_bins, the table's bins that control needs; foreign: 4 coarse frame bins).
    location_bins: int | None = None
    eval_every: int = 500  # probe accuracy every this many steps
    checkpoint_every: int = 250  # resumable checkpoint every this many steps
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 65_536)
        check_range("length_groups", self.length_groups, 1, 1024)
        check_choice("questions", self.questions, ("rendered", "stored"))
        for q, w in self.qtype_weights.items():
            check_choice("qtype_weights", q, QTYPES)
            check_range(f"qtype_weights.{q}", w, 0.0, 1000.0)
        if not any(self.qtype_weights.get(q, 1.0) > 0 for q in QTYPES):
            raise FieldValueError(
                "qtype_weights", self.qtype_weights, "a positive weight for some question type"
            )
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0, self.steps)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("vision_steps", self.vision_steps, 0, 10_000_000)
        check_range("vision_batch_size", self.vision_batch_size, 1, 65_536)
        check_range("vision_lr", self.vision_lr, 1e-7, 1.0)
        check_range("eval_every", self.eval_every, 1, 10_000_000)
        check_range("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        check_range("threads", self.threads, 0, 1024)
        if self.location_bins is not None:
            check_range("location_bins", self.location_bins, 0, 256)
        if self.freeze_vision and not self.vision_steps:
            raise FieldValueError(
                "freeze_vision", True, "false when vision_steps is 0 (nothing trains the tower)"
            )
        if sorted(self.curriculum) != list(self.curriculum):
            raise FieldValueError("curriculum", self.curriculum, "increasing step numbers")


@dataclass(frozen=True)
class TrainerConfig:
    """The Lightning training loop of `kinsul train`."""

    max_steps: int = 2500  # optimizer steps (the budget at which control is learned: docs/results.md)
    batch_size: int = 32  # samples per step; co-training fills its vlm_ratio share with VLM samples
    # Strategies with a FAST loss draw robot batches this many at a time and sort them by FAST length, so a batch
    # pads its FAST tokens to near its own length instead of the longest of 24 random ones (transformers'
    # group_by_length); 1 = independent batches.
    length_groups: int = 4
    lr: float = 1e-3  # peak AdamW learning rate (backbone: times the strategy's backbone_lr_scale)
    warmup_steps: int = 50  # linear warm-up, then cosine decay
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    val_every: int = 250  # validation (val/action_mse, val/velocity_mse) every this many steps
    val_frames: int = 256  # held-out frames scored per validation
    # Flow chunks drawn per validation frame: val/velocity_mse scores their mean (the expected chunk)
    val_samples: int = 8
    checkpoint_every: int = 250  # 'last' checkpoint every this many steps (best is kept on val/velocity_mse)
    precision: str = (
        "32-true"  # Lightning precision: 32-true | bf16-mixed (slower on this CPU, see benchmarks)
    )
    accelerator: str = "auto"  # cpu | gpu | auto
    # recompute each joint layer in the backward pass instead of storing its activations: less memory for a real
    # backbone (about a third more compute); the same gradients
    gradient_checkpointing: bool = False
    # torch.compile (Inductor) of the joint layer pass in training steps: fused elementwise kernels and, on CPU,
    # attention as matmuls + one fused softmax; the same values up to float rounding (tests/test_throughput.py).
    # It pays once compiled: about a minute or two on 2 CPU cores the first time, seconds from Inductor's on-disk
    # cache after that (docs/sweeps.md, `kinsul bench step_speedups`)
    compile: bool = False
    # AdamW's fused kernel (one op for every parameter instead of a loop over them); its update differs from the
    # loop's in the last bit, so it is a choice, not a silent default
    fused_optimizer: bool = False
    devices: int = 1  # devices per node
    nodes: int = (
        1  # machines (Lightning's num_nodes); torchrun or SLURM starts the processes (docs/scaling-out.md)
    )
    distributed: str = "auto"  # Lightning strategy: auto | ddp | fsdp
    runs_dir: str = "runs"  # run folders live here: runs/<run_name>/
    # empty: <strategy>-s<seed>-<config hash>; a folder name, never a path
    run_name: str = ""
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    # speed/steps_to_target: first validation with val/velocity_mse <= this. Calibrated (`kinsul bench
    # calibration`): halfway between an image-free (blind) regressor and the expert's own spread, so reaching it
    # takes grounded control.
    velocity_mse_target: float = 0.114
    # Training speed as closed-loop success against steps: a fixed small rollout set every curve_every steps
    # (0: off) logs eval/success; speed/steps_to_success is the first point with success >= success_target.
    curve_every: int = 250
    curve_episodes: int = 4  # seen-concept episodes per headline family in the curve's fixed seed set
    success_target: float = 0.5

    def __post_init__(self) -> None:
        check_range("velocity_mse_target", self.velocity_mse_target, 0.0, 1e6)
        check_range("curve_every", self.curve_every, 0, 10_000_000)
        check_range("curve_episodes", self.curve_episodes, 1, 10_000)
        check_range("success_target", self.success_target, 0.0, 1.0)
        check_range("max_steps", self.max_steps, 1, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 65_536)
        check_range("length_groups", self.length_groups, 1, 1024)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0, 10_000_000)
        check_range("grad_clip", self.grad_clip, 0.0, 1e6)
        check_range("val_every", self.val_every, 1, 10_000_000)
        check_range("val_frames", self.val_frames, 1, 10_000_000)
        check_range("val_samples", self.val_samples, 1, 1024)
        check_range("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        check_range("devices", self.devices, 1, 4096)
        check_range("nodes", self.nodes, 1, 100_000)
        check_range("threads", self.threads, 0, 1024)
        check_choice("precision", self.precision, ["32-true", "bf16-mixed", "16-mixed", "bf16-true"])
        check_choice("distributed", self.distributed, ["auto", "ddp", "fsdp"])
        check_choice("accelerator", self.accelerator, ["auto", "cpu", "gpu", "cuda", "mps"])
        check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        if self.run_name and (not RUN_NAME.fullmatch(self.run_name) or ".." in self.run_name):
            raise FieldValueError("run_name", self.run_name, "a folder name under trainer.runs_dir: letters, digits "
                                  "and . _ - + = , @ (no path separator, no '..', no control character), at most "
                                  "200 characters")  # fmt: skip


RUN_NAME = re.compile(r"\w[\w.+=,@-]{0,199}")

TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking (Lightning's MLFlowLogger)."""

    uri: str = "sqlite:///mlflow.db"  # a sqlite file in the working folder, or an `mlflow server` URL
    experiment: str = "kinsul"
    enabled: bool = True
    parent_run_id: str = ""  # set by sweeps: each trial's run is a child of the sweep's run

    def __post_init__(self) -> None:
        scheme = self.uri.split(":", 1)[0] if "://" in self.uri else ""
        if scheme not in TRACKING_SCHEMES:
            raise FieldValueError("uri", self.uri, "sqlite:///<file>.db or an MLflow server URL (http(s)://...; "
                                  "MLflow 3 refuses a plain ./mlruns file store)")  # fmt: skip

    def artifact_location(self) -> str | None:
        """Where a new experiment keeps its artifacts: beside a sqlite store (MLflow would otherwise use
        ./mlruns of whatever folder the process runs in); a server decides for itself (None)."""
        prefix = "sqlite:///"
        if not self.uri.startswith(prefix):
            return None
        return (Path(self.uri.removeprefix(prefix)).resolve().parent / "mlartifacts").as_uri()


@dataclass(frozen=True)
class EvalConfig:
    """`kinsul eval`: closed-loop rollouts, language following, knowledge retention, latency."""

    episodes: int = 10  # per task family, for each of: seen targets, held-out targets, distractor scenes
    execute_steps: int = 5  # actions executed from each predicted chunk before re-planning
    seed: int = 100_000  # first evaluation seed; the seed set is fixed by (seed, episodes, tasks)
    batch: int = 16  # environments stepped in lockstep
    probe_samples: int = 0  # VLM probe questions scored for retention; 0 = the whole probe split
    latency_repeats: int = 10  # timed chunks (after 3 warm-up ones); the median is reported
    videos: int = 2  # rollouts recorded as GIFs per set (seen, held-out), logged as artifacts
    offline_frames: int = 256  # demonstration frames scored for val/action_mse and val/action_mse_heldout
    # Task families averaged into eval/success (those of world.tasks; empty: all); the others are still rolled
    # out and logged per family (eval/success_<family>). pick_place is left out: even a policy told the target's
    # and destination's positions (oracle features) does not learn it at this scale (docs/results.md).
    headline_tasks: list[str] = field(default_factory=lambda: ["reach", "push"])
    # The checkpoint of a run folder that is evaluated: "last", the policy at the training budget (the paper's
    # axis, the same step for every strategy), or "best", the lowest val/velocity_mse: early stopping by an offline
    # proxy, a different step per trial (docs/results.md, section 6b). A checkpoint file given as the target wins.
    checkpoint: str = "last"
    # The simulator the policy is rolled out in: "kinsul" (KinsulWorld), "metaworld" (data.metaworld's tasks,
    # `episodes` each), or "none": the offline errors, retention and latency only (data without a simulator)
    env: str = "kinsul"

    def __post_init__(self) -> None:
        check_range("episodes", self.episodes, 1, 1_000_000)
        check_choice("env", self.env, ["kinsul", "metaworld", "none"])
        check_choice("checkpoint", self.checkpoint, ["last", "best"])
        check_range("execute_steps", self.execute_steps, 1, 10_000)
        check_range("batch", self.batch, 1, 4096)
        check_range("probe_samples", self.probe_samples, 0, 10_000_000)
        check_range("latency_repeats", self.latency_repeats, 1, 10_000)
        check_range("videos", self.videos, 0, 1000)
        check_range("offline_frames", self.offline_frames, 1, 10_000_000)
        for t in self.headline_tasks:
            check_choice("headline_tasks", t, TASK_FAMILIES)
