"""KinsulWorld: the embedded tabletop world, its tasks, renderer and scripted expert."""

import gymnasium as gym

from kinsul.world.concepts import COLOURS, REGIONS, SHAPES, SIZES, ConceptConfig
from kinsul.world.config import TASK_FAMILIES, WorldConfig
from kinsul.world.env import ACTION_DIM, STATE_DIM, KinsulWorldEnv

ENV_ID = "kinsul/KinsulWorld-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="kinsul.world.env:KinsulWorldEnv")

__all__ = [
    "ACTION_DIM",
    "COLOURS",
    "ENV_ID",
    "REGIONS",
    "SHAPES",
    "SIZES",
    "STATE_DIM",
    "TASK_FAMILIES",
    "ConceptConfig",
    "KinsulWorldEnv",
    "WorldConfig",
]
