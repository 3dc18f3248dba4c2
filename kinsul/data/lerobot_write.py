"""Writing a LeRobot v3.0 dataset folder (the layout `kinsul.data.lerobot` reads): demonstrations recorded in a
simulator, and the tests' datasets. One data file, one episodes file and one video file per camera, episodes one
after the other, as lerobot itself writes a dataset that fits its default file sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kinsul.data.atomic import atomic_folder
from kinsul.data.lerobot import DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH, EPISODES, INFO, STATS, TASKS

CODECS = {"av1": "libsvtav1", "h264": "libx264"}


class LeRobotWriter:
    """Episodes in, a LeRobot v3.0 folder out (written atomically by ``close``).

    ``cameras``: name -> (height, width), stored as video; ``vectors``: name -> length, float32 features such as
    ``observation.state`` and ``action``."""

    def __init__(self, root: str | Path, fps: int, cameras: dict[str, tuple[int, int]], vectors: dict[str, int],
                 codec: str = "av1", robot_type: str | None = None):  # fmt: skip
        if codec not in CODECS:
            raise ValueError(f"codec={codec!r}: expected one of {list(CODECS)}")
        self.root, self.fps, self.cameras, self.vectors = Path(root), fps, cameras, vectors
        self.codec, self.robot_type = codec, robot_type
        self._folder = atomic_folder(self.root, overwrite=True)
        self.tmp = self._folder.__enter__()
        self._videos = {cam: self._open_video(cam, h, w) for cam, (h, w) in cameras.items()}
        self.rows: dict[str, list] = {k: [] for k in [*vectors, "timestamp", "frame_index", "episode_index",
                                                      "index", "task_index"]}  # fmt: skip
        self.episodes: list[dict] = []
        self.tasks: dict[str, int] = {}
        self.frames = 0

    def _open_video(self, cam: str, h: int, w: int):
        import av

        path = self.tmp / DEFAULT_VIDEO_PATH.format(video_key=cam, chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(path), "w")
        stream = container.add_stream(CODECS[self.codec], rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if self.codec == "av1":
            stream.options = {"preset": "12"}  # the fastest SVT-AV1 preset: tests and demos, not archives
        else:
            stream.options = {"crf": "18"}
        return container, stream

    def add_episode(self, task: str, images: dict[str, np.ndarray], vectors: dict[str, np.ndarray]) -> None:
        """One episode: ``images[cam]`` (T, H, W, 3) uint8, ``vectors[name]`` (T, n)."""
        import av

        T = len(next(iter(vectors.values())))
        for name, v in vectors.items():
            if v.shape != (T, self.vectors[name]):
                raise ValueError(
                    f"episode vector '{name}' has shape {v.shape}, expected ({T}, {self.vectors[name]})"
                )
        start_frame = self.frames
        ep = {"episode_index": len(self.episodes), "tasks": [task], "length": T,
              "data/chunk_index": 0, "data/file_index": 0,
              "dataset_from_index": start_frame, "dataset_to_index": start_frame + T}  # fmt: skip
        task_index = self.tasks.setdefault(task, len(self.tasks))
        for cam, (container, stream) in self._videos.items():
            frames = images[cam]
            if frames.shape != (T, *self.cameras[cam], 3):
                raise ValueError(f"episode camera '{cam}' has shape {frames.shape}, expected ({T}, "
                                 f"{self.cameras[cam][0]}, {self.cameras[cam][1]}, 3)")  # fmt: skip
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = start_frame + i  # the stream's time base is 1/fps
                for packet in stream.encode(frame):
                    container.mux(packet)
            ep.update({f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": 0,
                       f"videos/{cam}/from_timestamp": start_frame / self.fps,
                       f"videos/{cam}/to_timestamp": (start_frame + T) / self.fps})  # fmt: skip
        for name, v in vectors.items():
            self.rows[name].extend(np.asarray(v, np.float32))
        self.rows["timestamp"].extend(np.arange(T, dtype=np.float32) / self.fps)
        self.rows["frame_index"].extend(range(T))
        self.rows["episode_index"].extend([ep["episode_index"]] * T)
        self.rows["index"].extend(range(start_frame, start_frame + T))
        self.rows["task_index"].extend([task_index] * T)
        self.episodes.append(ep)
        self.frames += T

    def close(self) -> Path:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        for container, stream in self._videos.values():
            for packet in stream.encode():
                container.mux(packet)
            container.close()
        columns = {k: pa.array(list(v), type=pa.list_(pa.float32(), self.vectors[k])) for k, v in self.rows.items()
                   if k in self.vectors}  # fmt: skip
        columns["timestamp"] = pa.array(self.rows["timestamp"], pa.float32())
        for k in ("frame_index", "episode_index", "index", "task_index"):
            columns[k] = pa.array(self.rows[k], pa.int64())
        data = self.tmp / DEFAULT_DATA_PATH.format(chunk_index=0, file_index=0)
        data.parent.mkdir(parents=True)
        pq.write_table(pa.table(columns), data)
        episodes = self.tmp / EPISODES / "chunk-000" / "file-000.parquet"
        episodes.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), episodes)
        # as lerobot writes it: the task text is the pandas index
        pd.DataFrame({"task_index": list(self.tasks.values())}, index=list(self.tasks)).to_parquet(
            self.tmp / TASKS
        )
        stats = {}
        for name in self.vectors:
            x = np.stack(self.rows[name]).astype(np.float64)
            stats[name] = {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
                           "max": x.max(0).tolist(), "count": [len(x)]}  # fmt: skip
        (self.tmp / STATS).write_text(json.dumps(stats, indent=2))
        features = {cam: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                          "info": {"video.fps": self.fps, "video.height": h, "video.width": w,
                                   "video.codec": self.codec, "video.pix_fmt": "yuv420p"}}
                    for cam, (h, w) in self.cameras.items()}  # fmt: skip
        features.update(
            {name: {"dtype": "float32", "shape": [n], "names": None} for name, n in self.vectors.items()}
        )
        features.update({"timestamp": {"dtype": "float32", "shape": [1], "names": None},
                         **{k: {"dtype": "int64", "shape": [1], "names": None}
                            for k in ("frame_index", "episode_index", "index", "task_index")}})  # fmt: skip
        info = {"codebase_version": "v3.0", "robot_type": self.robot_type, "total_episodes": len(self.episodes),
                "total_frames": self.frames, "total_tasks": len(self.tasks), "chunks_size": 1000,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DEFAULT_DATA_PATH,
                "video_path": DEFAULT_VIDEO_PATH if self.cameras else None, "features": features}  # fmt: skip
        (self.tmp / INFO).write_text(json.dumps(info, indent=4))
        self._folder.__exit__(None, None, None)
        return self.root
