"""LeRobot v3.0 datasets from a local folder: a folder written by the `lerobot` package itself and folders written
by kinsul's own writer (H.264 and AV1) read frame-exact; chunks stay within episodes; normalisation follows
meta/stats.json; bad folders fail in one line naming the file and what was expected; `ki` trains on one."""

import json
import shutil
from pathlib import Path

import lerobot_pattern as p
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import micro_train_config as micro

from kinsul.cli import main
from kinsul.config import ConfigError, load_config
from kinsul.data import lerobot as lr
from kinsul.data import store
from kinsul.data.config import LeRobotConfig
from kinsul.data.lerobot_write import LeRobotWriter

BY_LEROBOT = Path(__file__).parent / "data" / "lerobot-0.4.4-v3"  # tests/data/make_lerobot_dataset.py
BY_LEROBOT_IMAGES = BY_LEROBOT.with_name("lerobot-0.4.4-v3-images")  # the camera as PNGs inside the parquet
TOLERANCE = 12  # a lossy codec moves a flat colour by a few levels; adjacent frames differ by 40 or more


def write_pattern(root: Path, codec: str) -> Path:
    w = LeRobotWriter(
        root, p.FPS, {p.CAMERA: (p.HEIGHT, p.WIDTH)}, {"observation.state": 3, "action": 2}, codec
    )
    for e, length in enumerate(p.LENGTHS):
        w.add_episode(p.task(e), {p.CAMERA: np.stack([p.image(e, t) for t in range(length)])},
                      {"observation.state": np.stack([p.state(e, t) for t in range(length)]),
                       "action": np.stack([p.action(e, t) for t in range(length)])})  # fmt: skip
    return w.close()


def folder_cfg(**kw) -> LeRobotConfig:
    return LeRobotConfig(root="unused", cameras=[p.CAMERA], **kw)


def data_cfg(root: Path, lerobot_root: Path, *overrides):
    return load_config("micro", [f"data.root={root}", "data.robot_source=lerobot", f"data.lerobot.root={lerobot_root}",
                                 f"data.lerobot.cameras=[{p.CAMERA}]", "eval.env=none", "trainer.curve_every=0",
                                 "data.chunk_size=4", *overrides])  # fmt: skip


def assert_frame(image: np.ndarray, e: int, t: int, where: str) -> None:
    """Left and right halves' centres hold the frame's colour and its complement (not a neighbour's)."""
    h, w = image.shape[:2]
    left, right = image[h // 2, w // 4].astype(int), image[h // 2, 3 * w // 4].astype(int)
    want = p.colour(e, t).astype(int)
    assert np.abs(left - want).max() <= TOLERANCE and np.abs(right - (255 - want)).max() <= TOLERANCE, (
        f"{where}: episode {e} frame {t}: got {left}/{right}, expected {want}/{255 - want}"
    )


@pytest.fixture(scope="module", params=["lerobot-0.4.4", "lerobot-0.4.4-images", "kinsul-h264", "kinsul-av1"])
def dataset(request, tmp_path_factory) -> Path:
    if request.param.startswith("lerobot-0.4.4"):
        return BY_LEROBOT_IMAGES if request.param.endswith("images") else BY_LEROBOT
    return write_pattern(tmp_path_factory.mktemp("lerobot") / "ds", request.param.split("-")[1])


def test_every_frame_reads_exact_state_action_task_and_image(dataset):
    f = lr.LeRobotFolder(dataset, folder_cfg(normalize="identity", normalize_action="identity"))
    assert f.info["codebase_version"] == "v3.0" and [e.length for e in f.episodes] == list(p.LENGTHS)
    for ep in f.episodes:
        e = ep.index
        rows = lr._episode_rows(f, ep)
        np.testing.assert_array_equal(rows["observation.state"], [p.state(e, t) for t in range(ep.length)])
        np.testing.assert_array_equal(rows["action"], [p.action(e, t) for t in range(ep.length)])
        assert {f.tasks[int(i)] for i in rows["task_index"]} == {p.task(e)}
        (frames,) = lr._camera_frames(f, ep, rows)
        assert len(frames) == ep.length and frames[0].shape == (p.HEIGHT, p.WIDTH, 3)
        for t, frame in enumerate(frames):
            assert_frame(frame, e, t, str(dataset))


def test_imported_frames_keep_chunks_inside_their_episode(dataset, tmp_path):
    cfg = data_cfg(tmp_path / "data", dataset, "data.lerobot.normalize=identity", "data.lerobot.normalize_action=identity",
                   "data.lerobot.validation_episodes=1",
                   "data.lerobot.probe_episodes=1")  # fmt: skip
    ds = store.load(cfg, "robot") if store.generate(cfg, "robot", progress=False) else None
    assert {s: len(d) for s, d in ds.items()} == {"train": 6, "probe": 4, "validation": 5}
    H = cfg.data.chunk_size
    for split, e in (("train", 0), ("probe", 1), ("validation", 2)):
        rows = ds[split].with_format("numpy")[:]
        for t in range(p.LENGTHS[e]):
            np.testing.assert_array_equal(rows["state"][t], p.state(e, t))
            want = [p.action(e, min(t + k, p.LENGTHS[e] - 1)) for k in range(H)]  # the last action repeats
            np.testing.assert_array_equal(rows["actions"][t], want)
            np.testing.assert_array_equal(rows["action_pad"][t], [t + k >= p.LENGTHS[e] for k in range(H)])
            assert rows["instruction"][t] == p.task(e) and rows["heldout"][t] == (split == "probe")
            image = np.asarray(ds[split][t]["image"])
            assert image.shape == (cfg.world.image_size, cfg.world.image_size, 3)
            assert_frame(image, e, t, f"imported {split}")


def _scaled(raw: np.ndarray, s: dict, mode: str) -> np.ndarray:
    s = {k: np.asarray(v, np.float64) for k, v in s.items()}
    if mode == "mean_std":
        return (raw - s["mean"]) / np.where(s["std"] > 1e-8, s["std"], 1)
    return (raw - (s["max"] + s["min"]) / 2) / np.where(s["max"] > s["min"], (s["max"] - s["min"]) / 2, 1)


@pytest.mark.parametrize("state_mode, action_mode", [("mean_std", "min_max"), ("min_max", "mean_std")])
def test_state_and_action_are_normalised_by_meta_stats(state_mode, action_mode, tmp_path):
    cfg = data_cfg(tmp_path / "data", BY_LEROBOT, f"data.lerobot.normalize={state_mode}",
                   f"data.lerobot.normalize_action={action_mode}")  # fmt: skip
    store.generate(cfg, "robot", progress=False)
    train = store.load(cfg, "robot")["train"].with_format("numpy")[:]
    stats = json.loads((BY_LEROBOT / "meta" / "stats.json").read_text())  # as lerobot computed them
    frames = [(e, t) for e in (0, 1) for t in range(p.LENGTHS[e])]
    state = _scaled(np.stack([p.state(e, t) for e, t in frames]), stats["observation.state"], state_mode)
    action = _scaled(np.stack([p.action(e, t) for e, t in frames]), stats["action"], action_mode)
    np.testing.assert_allclose(train["state"], state, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        train["actions"][:, 0], action, rtol=1e-5, atol=1e-6
    )  # each chunk's first action
    if action_mode == "min_max":
        assert action.min() >= -1 - 1e-6 and action.max() <= 1 + 1e-6
    meta = json.loads((store.dataset_dir(cfg, "robot") / store.META_FILE).read_text())
    assert meta["lerobot"]["normalization"]["action"]["scale"]  # kept, to undo on a policy's actions


def test_a_second_epoch_run_or_trial_never_decodes_video_again(tmp_path, monkeypatch):
    cfg = data_cfg(tmp_path / "data", BY_LEROBOT)
    first = store.generate(cfg, "robot", progress=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("video decoded again")

    monkeypatch.setattr(lr, "decode_video", no_decoding)
    assert store.generate(cfg, "robot", progress=False) == first
    assert len(store.load(cfg, "robot")["train"]) == p.LENGTHS[0] + p.LENGTHS[1]


def _broken(tmp_path: Path, how: str) -> Path:
    root = tmp_path / how
    shutil.copytree(BY_LEROBOT, root)
    info_path = root / "meta" / "info.json"
    video = root / "videos" / p.CAMERA / "chunk-000" / "file-000.mp4"
    if how == "version":
        info = json.loads(info_path.read_text())
        info_path.write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    elif how == "no_video":
        video.unlink()
    elif how == "bad_video":
        video.write_bytes(b"not an mp4" * 50)
    elif how == "crossing":  # episode 1's last row claims to be episode 2's: its chunks would cross episodes
        data = root / "data" / "chunk-000" / "file-000.parquet"
        table = pq.read_table(data).to_pydict()
        table["episode_index"][9] = 2
        pq.write_table(pq.read_table(data).from_pydict(table, schema=pq.read_table(data).schema), data)
    return root


@pytest.mark.parametrize("how, overrides, message", [
    ("version", [], r"info\.json' has codebase_version 'v2\.1': kinsul reads LeRobot format v3\.0"),
    ("missing_key", ["data.lerobot.state=observation.joints"],
     r"data\.lerobot\.state: 'observation\.joints' is not a feature of '.*' \(its features: action, "),
    ("no_video", [], r"video '.*file-000\.mp4' \(camera 'observation\.images\.top', episode 0\) is missing"),
    ("bad_video", [], r"video '.*file-000\.mp4' \(camera 'observation\.images\.top', episode 0\) cannot be decoded"),
    ("crossing", [], r"episode 1 has 3 rows in '.*' with frame_index not 0\.\.3 .*would cross into another episode"),
])  # fmt: skip
def test_a_bad_folder_fails_in_one_line_naming_the_file(how, overrides, message, tmp_path, capsys):
    root = BY_LEROBOT if how == "missing_key" else _broken(tmp_path, how)
    cfg = data_cfg(tmp_path / "data", root, *overrides)
    with pytest.raises(lr.LeRobotError, match=message):
        store.generate(cfg, "robot", progress=False)
    argv = ["data", "generate", "micro", f"data.root={tmp_path / 'cli'}", "data.robot_source=lerobot",
            f"data.lerobot.root={root}", f"data.lerobot.cameras=[{p.CAMERA}]", "eval.env=none",
            "trainer.curve_every=0", *overrides]  # fmt: skip
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsul:")]
    assert len(err) == 1 and "LeRobotError" in err[0], err


def test_the_config_says_what_lerobot_data_needs():
    with pytest.raises(ConfigError, match=r"data\.lerobot\.root.*the LeRobot dataset folder"):
        load_config("micro", ["data.robot_source=lerobot"])
    with pytest.raises(ConfigError, match=r"eval\.env.*one of \['none'\] for data\.robot_source='lerobot'"):
        load_config("micro", ["data.robot_source=lerobot", "data.lerobot.root=x", "trainer.curve_every=0"])
    with pytest.raises(ConfigError, match=r"trainer\.curve_every.*0 with eval\.env=none"):
        load_config("micro", ["eval.env=none"])
    with pytest.raises(ConfigError, match=r"data\.lerobot\.normalize"):
        load_config("micro", ["data.lerobot.normalize=zscore"])


def test_ki_trains_two_steps_on_a_lerobot_dataset_and_is_evaluated_offline(micro_root):
    from kinsul.evaluation.evaluate import evaluate
    from kinsul.training.train import train

    cfg = micro(micro_root, "data.robot_source=lerobot", f"data.lerobot.root={BY_LEROBOT}",
                f"data.lerobot.cameras=[{p.CAMERA}]", "eval.env=none", "trainer.curve_every=0", "data.chunk_size=4",
                "strategy.name=ki", "trainer.max_steps=2", "trainer.run_name=lerobot-ki")  # fmt: skip
    run = train(cfg, progress=False)
    metrics = evaluate(run, log=False)[0]
    assert np.isfinite(metrics["val/action_mse"]) and np.isfinite(metrics["eval/retention"])
    assert not any(k.startswith("eval/success") for k in metrics)


def test_the_shipped_example_preset_names_the_lerobot_written_folder():
    cfg = load_config(str(Path(__file__).parents[1] / "ablations" / "lerobot.yaml"))
    assert Path(cfg.data.lerobot.root).resolve() == BY_LEROBOT.resolve()
    assert cfg.data.robot_source == "lerobot" and cfg.eval.env == "none" and cfg.strategy.name == "ki"
