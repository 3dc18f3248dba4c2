"""Meta-World demonstrations: Meta-World's own scripted policies, recorded as a LeRobot v3.0 dataset (so they
are read exactly as any LeRobot folder is), then imported into kinsul's robot frames.

Episodes are interleaved over the task set (episode k is task k mod n), so the last round, one episode of every
task, is the validation split. An episode the scripted policy does not finish within ``max_steps`` is redrawn
with the next seed. The recording is cached under ``data.root`` by a hash of what it depends on."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kinsul.data import lerobot
from kinsul.data.config import DataSections, LeRobotConfig
from kinsul.envs.config import ACTION_DIM, STATE_DIM
from kinsul.fields import config_hash

RECORDER_VERSION = 1
CAMERA = "observation.image"
MAX_ATTEMPTS = 10


def recording_dir(cfg: DataSections) -> Path:
    mw, d = cfg.data.metaworld, cfg.data
    digest = config_hash("metaworld", RECORDER_VERSION, mw, d.seed, cfg.world.image_size)
    return Path(d.root) / f"metaworld-lerobot-{digest}"


def _record_task(args) -> list[dict]:
    """Every demonstration of one task: (images, states, actions) per episode."""
    from kinsul.envs.metaworld import MetaWorldEnv

    mw, task_id, seed, size = args
    task = mw.tasks[task_id]
    env = MetaWorldEnv(task, size, mw.camera, mw.max_steps)
    episodes = []
    try:
        for k in range(mw.episodes):
            for attempt in range(MAX_ATTEMPTS):
                ep_seed = int(np.random.SeedSequence([seed, task_id, k, attempt]).generate_state(1)[0])
                obs, _ = env.reset(seed=ep_seed)
                images, states, actions = [], [], []
                for _ in range(mw.max_steps):
                    action = env.scripted_action()
                    images.append(obs["image"])
                    states.append(obs["state"])
                    actions.append(action)
                    obs, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        break
                if terminated:
                    break
            else:
                raise RuntimeError(f"Meta-World's scripted policy failed '{task}' {MAX_ATTEMPTS} times in "
                                   f"{mw.max_steps} steps: raise data.metaworld.max_steps")  # fmt: skip
            episodes.append({"task": env.instruction, "images": np.stack(images), "state": np.stack(states),
                             "action": np.stack(actions)})  # fmt: skip
    finally:
        env.close()
    return episodes


def record(cfg: DataSections, progress: bool = True) -> Path:
    """The recorded LeRobot folder for ``cfg`` (recorded now if missing: minutes, one process per core)."""
    from kinsul.data.lerobot_write import LeRobotWriter

    root = recording_dir(cfg)
    if (root / lerobot.INFO).is_file():
        return root
    mw, size = cfg.data.metaworld, cfg.world.image_size
    jobs = [(mw, i, cfg.data.seed, size) for i in range(len(mw.tasks))]
    bar = tqdm(total=len(jobs), desc="metaworld demos", unit="task", disable=not progress)
    with (
        bar,
        ProcessPoolExecutor(min(cfg.data.num_workers, len(jobs)), mp_context=get_context("spawn")) as pool,
    ):
        per_task = []
        for episodes in pool.map(_record_task, jobs):
            per_task.append(episodes)
            bar.update()
    writer = LeRobotWriter(root, mw.fps, {CAMERA: (size, size)}, {"observation.state": STATE_DIM, "action": ACTION_DIM}, mw.codec,
                           robot_type="sawyer")  # fmt: skip
    for k in range(mw.episodes):  # interleaved: the last round (one episode per task) is validation
        for episodes in per_task:
            ep = episodes[k]
            writer.add_episode(ep["task"], {CAMERA: ep["images"]}, {"observation.state": ep["state"],
                                                                    "action": ep["action"]})  # fmt: skip
    return writer.close()


def as_lerobot(cfg: DataSections):
    """``cfg`` reading the recorded folder as a LeRobot source (recording it first if needed)."""
    root = record(cfg)
    mapping = LeRobotConfig(root=str(root), cameras=[CAMERA], normalize=cfg.data.lerobot.normalize,
                            normalize_action=cfg.data.lerobot.normalize_action,
                            validation_episodes=len(cfg.data.metaworld.tasks), probe_episodes=0)  # fmt: skip
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, lerobot=mapping))


def generate_episodes(cfg: DataSections, split: str, episodes: range) -> dict[str, list]:
    return lerobot.generate_episodes(as_lerobot(cfg), split, episodes)


def sizes(cfg: DataSections) -> dict[str, int]:
    return lerobot.sizes(as_lerobot(cfg))


def dims(cfg: DataSections) -> tuple[int, int]:
    return STATE_DIM, ACTION_DIM


def key(cfg: DataSections) -> tuple:
    """The recording is a function of its config: the key needs no recorded folder."""
    d = cfg.data
    return (
        cfg.data.metaworld,
        d.seed,
        d.chunk_size,
        cfg.world.image_size,
        d.lerobot.normalize,
        d.lerobot.normalize_action,
        RECORDER_VERSION,
    )


def meta(cfg: DataSections) -> dict:
    return {**lerobot.meta(as_lerobot(cfg)), "metaworld": dataclasses.asdict(cfg.data.metaworld)}
