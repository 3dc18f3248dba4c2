import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from kinsul.config import KinsulConfig, load_config  # noqa: E402

# Tests that generate data, train, or start processes: `pytest -m "not integration"` leaves them out.
INTEGRATION_FIXTURES = {"micro_data", "micro_root", "micro_cfg"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def micro_root(tmp_path_factory):
    """Micro data and a micro pretrained VLM, shared by the training tests."""
    from kinsul.pretraining.pretrain import pretrain_vlm

    root = tmp_path_factory.mktemp("train")
    pretrain_vlm(load_config("micro", [f"data.root={root / 'data'}"]), progress=False)
    return root


def micro_train_config(root, *overrides):
    return load_config("micro", [f"data.root={root / 'data'}", f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                                 f"trainer.runs_dir={root / 'runs'}", *overrides])  # fmt: skip
