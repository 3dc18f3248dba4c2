import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from kinsul.config import KinsulConfig, load_config  # noqa: E402


@pytest.fixture
def micro_cfg(tmp_path) -> KinsulConfig:
    """The micro preset with its data under a fresh temporary folder."""
    return load_config("micro", [f"data.root={tmp_path / 'data'}"])


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory):
    """Micro datasets generated once per test session: (config, robot DatasetDict, vlm DatasetDict)."""
    from kinsul.data.store import generate, open_dataset

    root = tmp_path_factory.mktemp("data")
    cfg = load_config("micro", [f"data.root={root}"])
    robot = open_dataset(generate(cfg, "robot", progress=False), "robot")
    vlm = open_dataset(generate(cfg, "vlm", progress=False), "vlm")
    return cfg, robot, vlm
