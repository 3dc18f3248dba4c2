"""LeRobot datasets, format v3.0, from a local folder: read as kinsul's robot frames.

Follows the v3.0 layout as written by lerobot 0.4 (its ``CODEBASE_VERSION = "v3.0"``):

    meta/info.json                         codebase_version, fps, features (dtype, shape), path templates
    meta/stats.json                        per feature: mean, std, min, max (lists)
    meta/tasks.parquet                     task_index, the task text as the pandas index
    meta/episodes/chunk-*/file-*.parquet   per episode: length, dataset_from_index/_to_index, data/chunk_index,
                                           data/file_index, videos/<key>/{chunk_index, file_index,
                                           from_timestamp, to_timestamp}
    data/chunk-*/file-*.parquet            one row per frame: the features, timestamp (within its episode),
                                           frame_index, episode_index, index, task_index; several episodes a file
    videos/<key>/chunk-*/file-*.mp4        several episodes a file, one after the other: an episode's frame at
                                           row timestamp t is the video frame at from_timestamp + t

A frame's image is the decoded video frame whose presentation time matches that timestamp (within
``tolerance_s``), never the n-th frame: a file that dropped or repeated a frame is refused rather than misaligned.
The folder is read once, by `kinsul data`'s store, into a cached kinsul robot dataset (decoded, resized,
normalised, action chunks built within each episode), so no epoch, run or sweep trial decodes video again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinsul.data.config import DataSections, LeRobotConfig

SUPPORTED_VERSIONS = ("v3.0",)
INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
EPISODES = "meta/episodes"
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
SPLITS = ("train", "validation", "probe")


class LeRobotError(RuntimeError):
    """A LeRobot folder that is missing a part, holds another format version, or does not fit the config."""


def _read_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise LeRobotError(f"'{path}' is missing: a LeRobot v3.0 dataset has it")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise LeRobotError(f"'{path}' cannot be read as parquet ({str(e)[:160]})") from None


@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    start: int  # dataset_from_index: its first row's global `index`
    data_file: Path
    videos: dict[str, tuple[Path, float]]  # camera -> (file, from_timestamp)


class LeRobotFolder:
    """The parts of a LeRobot v3.0 folder kinsul reads, checked against the config's feature names."""

    def __init__(self, root: str | Path, cfg: LeRobotConfig):
        self.root, self.cfg = Path(root), cfg
        info_path = self.root / INFO
        if not info_path.is_file():
            raise LeRobotError(f"'{info_path}' is missing: data.lerobot.root must be a LeRobot dataset folder "
                               "(format v3.0, with meta/info.json)")  # fmt: skip
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise LeRobotError(f"'{info_path}' is not valid JSON ({e})") from None
        version = self.info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise LeRobotError(f"'{info_path}' has codebase_version {version!r}: kinsul reads LeRobot format "
                               f"{', '.join(SUPPORTED_VERSIONS)} (lerobot >= 0.4); convert older datasets with "
                               "lerobot's convert_dataset_v21_to_v30")  # fmt: skip
        self.features: dict = self.info.get("features") or {}
        self.fps = float(self.info.get("fps") or 0)
        if self.fps <= 0:
            raise LeRobotError(f"'{info_path}' has no positive fps")
        self._check_features()
        self.tasks = self._tasks()
        self.episodes = self._episodes()

    def _check_features(self) -> None:
        known = ", ".join(sorted(self.features))
        for field, keys, kinds in (("cameras", self.cfg.cameras, ("video", "image")),
                                   ("state", [self.cfg.state], ("float32", "float64")),
                                   ("action", [self.cfg.action], ("float32", "float64"))):  # fmt: skip
            for key in keys:
                if key not in self.features:
                    raise LeRobotError(f"data.lerobot.{field}: '{key}' is not a feature of '{self.root}' "
                                       f"(its features: {known})")  # fmt: skip
                dtype = self.features[key].get("dtype")
                if dtype not in kinds:
                    raise LeRobotError(f"data.lerobot.{field}: feature '{key}' of '{self.root}' has dtype "
                                       f"{dtype!r}, expected one of {list(kinds)}")  # fmt: skip
        for key in (self.cfg.state, self.cfg.action):
            shape = self.features[key].get("shape")
            if not (isinstance(shape, list) and len(shape) == 1 and shape[0] > 0):
                raise LeRobotError(
                    f"feature '{key}' of '{self.root}' has shape {shape}, expected a vector [n]"
                )

    @property
    def state_dim(self) -> int:
        return int(self.features[self.cfg.state]["shape"][0])

    @property
    def action_dim(self) -> int:
        return int(self.features[self.cfg.action]["shape"][0])

    def _tasks(self) -> dict[int, str]:
        df = _read_parquet(self.root / TASKS).to_pandas()
        texts = df["task"] if "task" in df.columns else df.index  # lerobot keeps the text as the pandas index
        return {int(i): str(t) for i, t in zip(df["task_index"], texts, strict=True)}

    def _episodes(self) -> list[Episode]:
        files = sorted((self.root / EPISODES).glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotError(f"'{self.root / EPISODES}' holds no chunk-*/file-*.parquet: a LeRobot v3.0 "
                               "dataset lists its episodes there")  # fmt: skip
        data_path = self.info.get("data_path") or DEFAULT_DATA_PATH
        video_path = self.info.get("video_path") or DEFAULT_VIDEO_PATH
        episodes = []
        for f in files:
            rows = _read_parquet(f).to_pylist()
            for r in rows:
                missing = [k for k in ("episode_index", "length", "dataset_from_index", "data/chunk_index",
                                       "data/file_index") if k not in r]  # fmt: skip
                videos = {}
                for cam in self.cfg.cameras:
                    if self.features[cam]["dtype"] != "video":
                        continue
                    keys = [f"videos/{cam}/{k}" for k in ("chunk_index", "file_index", "from_timestamp")]
                    missing += [k for k in keys if k not in r]
                    if not missing:
                        path = video_path.format(video_key=cam, chunk_index=r[keys[0]], file_index=r[keys[1]])
                        videos[cam] = (self.root / path, float(r[keys[2]]))
                if missing:
                    raise LeRobotError(
                        f"'{f}' has no column {missing[0]}: a LeRobot v3.0 episodes file has it"
                    )
                path = data_path.format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
                episodes.append(Episode(int(r["episode_index"]), int(r["length"]), int(r["dataset_from_index"]),
                                        self.root / path, videos))  # fmt: skip
        return sorted(episodes, key=lambda e: e.index)

    def split_episodes(self) -> dict[str, list[Episode]]:
        """In order: the rest trains, then ``probe_episodes``, then the last ``validation_episodes``."""
        n, v, p = len(self.episodes), self.cfg.validation_episodes, self.cfg.probe_episodes
        if v + p >= n:
            raise LeRobotError(f"data.lerobot: validation_episodes={v} + probe_episodes={p} leave no training "
                               f"episode of the {n} in '{self.root}'")  # fmt: skip
        return {"train": self.episodes[: n - v - p], "probe": self.episodes[n - v - p : n - v],
                "validation": self.episodes[n - v :]}  # fmt: skip

    def stats(self, field: str) -> dict:
        path = self.root / STATS
        if not path.is_file():
            raise LeRobotError(f"'{path}' is missing: data.lerobot.{field}={getattr(self.cfg, field)!r} reads it "
                               f"(or set data.lerobot.{field}=identity)")  # fmt: skip
        return json.loads(path.read_text())

    def normalization(self) -> dict[str, dict[str, list[float]]]:
        """Per key (state, action): ``x_norm = (x - shift) / scale``, from meta/stats.json by the config."""
        out = {}
        for key, dim, field in ((self.cfg.state, self.state_dim, "normalize"),
                                (self.cfg.action, self.action_dim, "normalize_action")):  # fmt: skip
            mode = getattr(self.cfg, field)
            if mode == "identity":
                shift, scale = np.zeros(dim), np.ones(dim)
            else:
                s = self.stats(field).get(key, {})
                need = ("mean", "std") if mode == "mean_std" else ("min", "max")
                if any(k not in s for k in need):
                    raise LeRobotError(f"'{self.root / STATS}' has no {'/'.join(need)} for '{key}': "
                                       f"data.lerobot.{field}={mode!r} needs them")  # fmt: skip
                a, b = (np.asarray(s[k], np.float64).reshape(-1) for k in need)
                if a.shape != (dim,) or b.shape != (dim,):
                    raise LeRobotError(f"'{self.root / STATS}': the {'/'.join(need)} of '{key}' have shapes "
                                       f"{a.shape}/{b.shape}, expected ({dim},)")  # fmt: skip
                # min/max map to [-1, 1] (lerobot's MIN_MAX); a constant dimension is left unscaled
                shift, scale = (a, b) if mode == "mean_std" else ((a + b) / 2, (b - a) / 2)
                scale = np.where(scale > 1e-8, scale, 1.0)
            out[key] = {"shift": shift.tolist(), "scale": scale.tolist()}
        return out

    @functools.cached_property
    def fingerprint(self) -> str:
        """What the imported frames depend on in the folder: every file's path, size and modification time."""
        h = hashlib.sha256()
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                h.update(f"{p.relative_to(self.root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


_OPEN: dict[tuple[str, str], LeRobotFolder] = {}


def folder(cfg: DataSections) -> LeRobotFolder:
    """The configured folder, read once per process (its episode table and fingerprint are reused)."""
    from kinsul.fields import config_hash

    c = cfg.data.lerobot
    k = (str(Path(c.root).resolve()), config_hash(c))
    if k not in _OPEN:
        _OPEN[k] = LeRobotFolder(k[0], c)
    return _OPEN[k]


def decode_video(path: Path, timestamps: list[float], tolerance_s: float, where: str) -> list[np.ndarray]:
    """RGB frames of ``path`` at ``timestamps`` (seconds in the file), matched by presentation time."""
    import av

    if not path.is_file():
        raise LeRobotError(f"video '{path}' ({where}) is missing")
    first, last = min(timestamps), max(timestamps)
    found: list[tuple[float, np.ndarray]] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(int(max(first - 1.0, 0) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t < first - tolerance_s:
                    continue
                if t > last + tolerance_s:
                    break
                found.append((t, frame.to_ndarray(format="rgb24")))
    except (av.FFmpegError, IndexError, ValueError) as e:
        raise LeRobotError(f"video '{path}' ({where}) cannot be decoded ({type(e).__name__}: {e})") from None
    times = np.array([t for t, _ in found])
    frames = []
    for ts in timestamps:
        i = int(np.argmin(np.abs(times - ts))) if len(times) else -1
        if i < 0 or abs(times[i] - ts) > tolerance_s:
            near = f"nearest decoded frame at {times[i]:.4f} s" if i >= 0 else "no frame decoded near it"
            raise LeRobotError(f"video '{path}' ({where}) has no frame at {ts:.4f} s within "
                               f"data.lerobot.tolerance_s={tolerance_s} ({near})")  # fmt: skip
        frames.append(found[i][1])
    return frames


@functools.lru_cache(maxsize=2)
def _data_table(path: Path):
    return _read_parquet(path)


def _episode_rows(f: LeRobotFolder, ep: Episode) -> dict[str, np.ndarray]:
    """The episode's rows, in frame order, checked to be one whole run of frames 0..length-1: an action chunk
    is built from them alone and must never reach into the next episode."""
    import pyarrow.compute as pc

    table = _data_table(ep.data_file)
    for col in ("episode_index", "frame_index", "timestamp", "task_index", f.cfg.state, f.cfg.action):
        if col not in table.column_names:
            raise LeRobotError(f"'{ep.data_file}' has no column '{col}'")
    rows = table.filter(pc.equal(table["episode_index"], ep.index))
    frame_index = rows["frame_index"].to_numpy()
    order = np.argsort(frame_index, kind="stable")
    if len(rows) != ep.length or not np.array_equal(frame_index[order], np.arange(ep.length)):
        raise LeRobotError(f"episode {ep.index} has {len(rows)} rows in '{ep.data_file}' with frame_index "
                           f"not 0..{ep.length - 1} (meta/episodes says length {ep.length}): its action chunks "
                           "would cross into another episode or skip frames")  # fmt: skip
    if "index" in table.column_names:
        index = rows["index"].to_numpy()[order]
        if not np.array_equal(index, ep.start + np.arange(ep.length)):
            raise LeRobotError(f"episode {ep.index}'s rows in '{ep.data_file}' have index {index[:1]}.. , not "
                               f"dataset_from_index {ep.start} onward: meta/episodes and data disagree")  # fmt: skip
    out = {"timestamp": rows["timestamp"].to_numpy()[order].astype(np.float64),
           "task_index": rows["task_index"].to_numpy()[order]}  # fmt: skip
    for key in (f.cfg.state, f.cfg.action):
        out[key] = np.stack(rows[key].to_numpy(zero_copy_only=False)[order]).astype(np.float32)
    for cam in f.cfg.cameras:
        if f.features[cam]["dtype"] == "image":
            if cam not in rows.column_names:
                raise LeRobotError(f"'{ep.data_file}' has no column '{cam}' (an image feature)")
            out[cam] = np.asarray(rows[cam].to_pylist(), dtype=object)[order]
    return out


def _camera_frames(f: LeRobotFolder, ep: Episode, rows: dict) -> list[list[np.ndarray]]:
    """Per camera, the episode's RGB frames."""
    import io

    from PIL import Image

    cams = []
    for cam in f.cfg.cameras:
        if f.features[cam]["dtype"] == "video":
            path, offset = ep.videos[cam]
            where = f"camera '{cam}', episode {ep.index}"
            cams.append(decode_video(path, [offset + t for t in rows["timestamp"]], f.cfg.tolerance_s, where))
        else:
            cams.append([np.asarray(Image.open(io.BytesIO(v["bytes"])).convert("RGB")) for v in rows[cam]])
    return cams


def _observation_image(views: list[np.ndarray], size: int) -> np.ndarray:
    """Cameras side by side (heights matched), resized to the square image the backbone's processor takes."""
    from PIL import Image

    h = min(v.shape[0] for v in views)
    views = [v if v.shape[0] == h else np.asarray(Image.fromarray(v).resize((round(v.shape[1] * h / v.shape[0]), h),
                                                                             Image.BILINEAR)) for v in views]  # fmt: skip
    tiled = np.concatenate(views, axis=1)
    if tiled.shape[:2] == (size, size):
        return tiled
    return np.asarray(Image.fromarray(tiled).resize((size, size), Image.BILINEAR))


def episode_chunks(actions: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunks ``a[t:t+H]`` of one episode; past its end the last action repeats, masked (``pad`` True)."""
    T = len(actions)
    padded = np.concatenate([actions, np.repeat(actions[-1:], horizon, axis=0)], axis=0)
    idx = np.arange(T)[:, None] + np.arange(horizon)[None, :]
    return padded[idx], idx >= T


def generate_episodes(cfg: DataSections, split: str, episodes: range) -> dict[str, list]:
    """kinsul robot columns for episodes ``episodes`` (positions in ``split``) of the configured folder."""
    from kinsul.data.robot import png_bytes, robot_features

    f = folder(cfg)
    norm = f.normalization()
    H, size = cfg.data.chunk_size, cfg.world.image_size
    cols: dict[str, list] = {k: [] for k in robot_features(H, f.state_dim, f.action_dim)}
    in_split = f.split_episodes()[split]
    for ep in [in_split[i] for i in episodes]:
        rows = _episode_rows(f, ep)
        state, action = ((rows[k] - np.asarray(norm[k]["shift"], np.float32)) / np.asarray(norm[k]["scale"], np.float32)
                         for k in (f.cfg.state, f.cfg.action))  # fmt: skip
        chunks, pad = episode_chunks(action.astype(np.float32), H)
        cams = _camera_frames(f, ep, rows)
        for t in range(ep.length):
            task = f.tasks.get(int(rows["task_index"][t]))
            if task is None:
                raise LeRobotError(f"episode {ep.index} frame {t}: task_index {rows['task_index'][t]} is not in "
                                   f"'{f.root / TASKS}'")  # fmt: skip
            cols["image"].append(
                {"bytes": png_bytes(_observation_image([c[t] for c in cams], size)), "path": None}
            )
            cols["state"].append(state[t].astype(np.float32).tolist())
            cols["instruction"].append(task)
            cols["task"].append(task)
            cols["actions"].append(chunks[t])
            cols["action_pad"].append(pad[t].tolist())
            cols["episode_index"].append(ep.index)
            cols["frame_index"].append(t)
            cols["target_colour"].append("")
            cols["target_shape"].append("")
            cols["heldout"].append(split == "probe")
    return cols


def sizes(cfg: DataSections) -> dict[str, int]:
    return {s: len(eps) for s, eps in folder(cfg).split_episodes().items()}


def key(cfg: DataSections) -> tuple:
    """What the imported frames depend on: the folder's content, the mapping, the chunk and image sizes."""
    f = folder(cfg)
    return str(f.root), f.fingerprint, cfg.data.lerobot, cfg.data.chunk_size, cfg.world.image_size


def dims(cfg: DataSections) -> tuple[int, int]:
    f = folder(cfg)
    return f.state_dim, f.action_dim


def meta(cfg: DataSections) -> dict:
    f = folder(cfg)
    norm = f.normalization()
    return {"lerobot": {"root": str(f.root), "codebase_version": f.info["codebase_version"], "fps": f.fps,
                        "episodes": {s: [e.index for e in eps] for s, eps in f.split_episodes().items()},
                        # by role: what a policy's observations and actions are scaled by
                        "normalization": {"state": norm[f.cfg.state], "action": norm[f.cfg.action]}}}  # fmt: skip
