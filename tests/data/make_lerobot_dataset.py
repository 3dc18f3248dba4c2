"""Writes tests/data/lerobot-0.4.4-v3/ (the camera as its default AV1 video) and tests/data/lerobot-0.4.4-v3-images/
(the camera as PNG images inside the parquet files, `use_videos=False`) with the `lerobot` package itself
(LeRobotDataset.create, add_frame, save_episode, finalize), from the formulas in tests/lerobot_pattern.py.

lerobot is not a kinsul dependency (it pins an older torch): run this once in an environment of its own, e.g.

    python3.11 -m venv /tmp/lerobot-venv
    /tmp/lerobot-venv/bin/pip install torch==2.14.1 torchvision==0.29.1   # the wheels on this machine's disk
    /tmp/lerobot-venv/bin/pip install --no-deps lerobot==0.4.4
    /tmp/lerobot-venv/bin/pip install 'datasets>=4,<5' 'huggingface-hub<0.36' 'av>=15,<16' jsonlines \
        'packaging<26' pandas pyarrow fsspec pillow draccus==0.10.0 deepdiff imageio termcolor einops gymnasium
    /tmp/lerobot-venv/bin/python tests/data/make_lerobot_dataset.py
"""

import shutil
import sys
from pathlib import Path

import lerobot
from lerobot.datasets.lerobot_dataset import LeRobotDataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import lerobot_pattern as p  # noqa: E402

for suffix, dtype in (("", "video"), ("-images", "image")):
    root = HERE / f"lerobot-{lerobot.__version__}-v3{suffix}"
    shutil.rmtree(root, ignore_errors=True)
    features = {
        p.CAMERA: {"dtype": dtype, "shape": (p.HEIGHT, p.WIDTH, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["e", "t", "sum"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["a0", "a1"]},
    }
    ds = LeRobotDataset.create(
        "kinsul/pattern", fps=p.FPS, features=features, root=root, use_videos=dtype == "video"
    )
    for e, length in enumerate(p.LENGTHS):
        for t in range(length):
            ds.add_frame({p.CAMERA: p.image(e, t), "observation.state": p.state(e, t), "action": p.action(e, t),
                          "task": p.task(e)})  # fmt: skip
        ds.save_episode()
    ds.finalize()
    print(f"wrote {root}")
