"""Robot demonstrations: scripted-expert episodes flattened into frames with action-chunk targets."""

from __future__ import annotations

import io

import numpy as np
from datasets import Array2D, Features, Image, List, Value
from PIL import Image as PILImage

from kinsul.data.config import DataSections
from kinsul.world.env import ACTION_DIM, STATE_DIM, KinsulWorldEnv
from kinsul.world.expert import ScriptedExpert, run_expert_episode

# Split -> which concepts the demonstrations target; 'probe' episodes are for measurement only.
ROBOT_SPLITS = {"train": "seen", "validation": "seen", "probe": "heldout"}
MAX_ATTEMPTS = 20  # an episode the expert fails is redrawn with the next attempt's seed


def robot_features(chunk_size: int, state_dim: int = STATE_DIM, action_dim: int = ACTION_DIM) -> Features:
    return Features(
        {
            "image": Image(),
            "state": List(Value("float32"), length=state_dim),
            "instruction": Value("string"),
            "task": Value("string"),
            "actions": Array2D((chunk_size, action_dim), "float32"),  # a[t : t + H]
            "action_pad": List(Value("bool"), length=chunk_size),  # True where t + k is past the episode end
            "episode_index": Value("int32"),
            "frame_index": Value("int32"),
            "target_colour": Value("string"),
            "target_shape": Value("string"),
            "heldout": Value("bool"),
        }
    )


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def action_chunks(actions: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunks ``a[t:t+H]`` for every t; past the end the robot holds still with its last grip command."""
    T = len(actions)
    hold = np.zeros((horizon, ACTION_DIM), np.float32)
    hold[:, 2] = actions[-1, 2]
    padded = np.concatenate([actions, hold], axis=0)
    idx = np.arange(T)[:, None] + np.arange(horizon)[None, :]
    return padded[idx], idx >= T


def episode_seed(base: int, split: str, episode: int, attempt: int) -> int:
    split_id = list(ROBOT_SPLITS).index(split)
    return int(np.random.SeedSequence([base, split_id, episode, attempt]).generate_state(1)[0])


def generate_episodes(cfg: DataSections, split: str, episodes: range) -> dict[str, list]:
    """Columns for ``episodes`` of ``split``; deterministic per episode, whatever the sharding."""
    env = KinsulWorldEnv(cfg.world, cfg.concepts)
    H = cfg.data.chunk_size
    cols: dict[str, list] = {k: [] for k in robot_features(H)}
    for ep in episodes:
        for attempt in range(MAX_ATTEMPTS):
            seed = episode_seed(cfg.data.seed, split, ep, attempt)
            expert = ScriptedExpert(env, np.random.default_rng(seed))
            observations, actions, info = run_expert_episode(
                env, expert, seed, {"concepts": ROBOT_SPLITS[split]}
            )
            if info["is_success"]:
                break
        else:
            raise RuntimeError(f"the scripted expert failed episode {ep} of '{split}' {MAX_ATTEMPTS} times")
        acts = np.stack(actions).astype(np.float32)
        chunks, pad = action_chunks(acts, H)
        for t, obs in enumerate(observations):
            cols["image"].append({"bytes": png_bytes(obs["image"]), "path": None})
            cols["state"].append(obs["state"].tolist())
            cols["instruction"].append(obs["instruction"])
            cols["task"].append(info["task"])
            cols["actions"].append(chunks[t])
            cols["action_pad"].append(pad[t].tolist())
            cols["episode_index"].append(ep)
            cols["frame_index"].append(t)
            cols["target_colour"].append(info["target_colour"])
            cols["target_shape"].append(info["target_shape"])
            cols["heldout"].append(info["heldout"])
    return cols
