import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import DatasetDict

from kinsul.cli import main
from kinsul.config import load_config
from kinsul.data import store
from kinsul.data.store import DatasetError, dataset_dir, generate, load, open_dataset
from kinsul.data.vlm import QTYPES


def heldout_words(cfg):
    return set(cfg.concepts.heldout_colours) | set(cfg.concepts.heldout_shapes)


def test_robot_schema_and_chunk_targets(micro_data):
    cfg, robot, _ = micro_data
    assert set(robot) == {"train", "validation", "probe"}
    H = cfg.data.chunk_size
    row = robot["train"].with_format("numpy")[0]
    assert row["image"].shape == (64, 64, 3) and row["image"].dtype == np.uint8
    assert row["state"].shape == (4,) and row["actions"].shape == (H, 3) and row["action_pad"].shape == (H,)
    episodes = robot["train"].with_format("numpy")[:]
    assert len(set(episodes["episode_index"].tolist())) == cfg.data.robot_episodes.train
    # consecutive frames of one episode see the same future, shifted by one step
    for t in range(len(episodes["frame_index"]) - 1):
        if episodes["episode_index"][t] == episodes["episode_index"][t + 1]:
            a, b = episodes["actions"][t], episodes["actions"][t + 1]
            np.testing.assert_array_equal(
                a[1:][~episodes["action_pad"][t][1:]], b[:-1][~episodes["action_pad"][t][1:]]
            )
    last = [
        t
        for t in range(len(episodes["frame_index"]))
        if t + 1 == len(episodes["frame_index"]) or episodes["frame_index"][t + 1] == 0
    ]
    assert all(episodes["action_pad"][t][1:].all() and not episodes["action_pad"][t][0] for t in last)


def test_heldout_concepts_absent_from_robot_targets_present_in_vlm(micro_data):
    cfg, robot, vlm = micro_data
    words = heldout_words(cfg)
    for split in ("train", "validation"):
        d = robot[split]
        assert not any(d["heldout"])
        assert not any(set(i.split()) & words for i in d["instruction"])
        assert not (set(d["target_colour"]) & words or set(d["target_shape"]) & words)
    assert all(robot["probe"]["heldout"])
    assert all(set(i.split()) & words for i in robot["probe"]["instruction"])
    for split in vlm:
        texts = [f"{q} {a}" for q, a in zip(vlm[split]["question"], vlm[split]["answer"], strict=True)]
        assert any(set(t.split()) & words for t in texts), f"VLM {split} never names a held-out concept"
        assert sum(vlm[split]["heldout"]) == sum(bool(set(t.split()) & words) for t in texts)


def test_vlm_question_types_balanced_and_answers_exact(micro_data):
    cfg, _, vlm = micro_data
    d = vlm["train"]
    counts = {q: d["qtype"].count(q) for q in QTYPES}
    assert max(counts.values()) - min(counts.values()) <= 1
    for a, t in zip(d["answer"], d["qtype"], strict=True):
        if t == "loc":
            x, y = a.split()
            assert x.startswith("loc") and int(x[3:]) < cfg.data.loc_bins and int(y[3:]) < cfg.data.loc_bins
        if t == "count":
            assert a.isdigit()


def test_round_trip_cache_and_load(micro_data, tmp_path):
    cfg, robot, _ = micro_data
    path = dataset_dir(cfg, "robot")
    stamp = os.stat(path / store.META_FILE).st_mtime_ns
    assert generate(cfg, "robot", progress=False) == path  # cached: not regenerated
    assert os.stat(path / store.META_FILE).st_mtime_ns == stamp
    again = load(cfg, "robot")
    assert again["train"][:5]["instruction"] == robot["train"][:5]["instruction"]
    meta = json.loads((path / store.META_FILE).read_text())
    assert meta["rows"]["train"] == len(robot["train"])


def test_generation_is_deterministic_across_workers(micro_cfg):
    a = open_dataset(generate(micro_cfg, "robot", progress=False))
    two = dataclasses.replace(micro_cfg, data=dataclasses.replace(micro_cfg.data, num_workers=2))
    b = open_dataset(generate(two, "robot", force=True, progress=False))  # workers are not in the cache key
    assert a["train"]["instruction"] == b["train"]["instruction"]
    np.testing.assert_array_equal(
        a["train"].with_format("numpy")["actions"], b["train"].with_format("numpy")["actions"]
    )


def test_interrupted_generation_leaves_nothing_loadable(micro_cfg, monkeypatch):
    real_save = DatasetDict.save_to_disk

    def save_then_die(self, path, **kw):
        real_save(DatasetDict({"train": self["train"]}), path, num_shards={"train": 1})  # half written ...
        raise KeyboardInterrupt  # ... then the user hits Ctrl-C

    monkeypatch.setattr(DatasetDict, "save_to_disk", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate(micro_cfg, "robot", progress=False)
    final = dataset_dir(micro_cfg, "robot")
    assert not final.exists()
    with pytest.raises(DatasetError, match=str(final)):
        load(micro_cfg, "robot")
    assert not list(final.parent.glob(f".tmp-{final.name}-*"))  # the half-written copy went with the error
    # a writer killed outright (SIGKILL) leaves its temporary folder: unloadable, and removed by the next writer
    killed = final.parent / f".tmp-{final.name}-999999999"
    (killed / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(killed)
    monkeypatch.undo()
    assert open_dataset(generate(micro_cfg, "robot", progress=False), "robot")  # a rerun completes
    assert not killed.exists()


def test_empty_splits_round_trip(tmp_path):
    cfg = load_config("micro", [f"data.root={tmp_path}", "data.robot_episodes.validation=0"])
    ds = open_dataset(generate(cfg, "robot", progress=False), "robot")
    assert len(ds["validation"]) == 0 and len(ds["train"]) > 0


def test_missing_or_corrupt_dataset_names_the_path(micro_data, tmp_path):
    cfg, _, _ = micro_data
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=f"'{missing}' does not exist"):
        open_dataset(missing)
    broken = tmp_path / "broken"
    shutil.copytree(dataset_dir(cfg, "vlm"), broken)
    for f in (broken / "train").glob("*.arrow"):
        f.write_bytes(b"not arrow")
    with pytest.raises(DatasetError, match=f"'{broken}'.*corrupt"):
        open_dataset(broken)["train"][0]
    (broken / store.META_FILE).write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        open_dataset(broken)
    with pytest.raises(DatasetError, match="expected 'robot' data"):
        open_dataset(dataset_dir(cfg, "vlm"), "robot")


def test_cli_generate_prints_summary(micro_cfg, capsys):
    assert main(["data", "generate", "micro", f"data.root={micro_cfg.data.root}"]) == 0
    out = capsys.readouterr().out
    assert (
        "robot dataset" in out and "vlm dataset" in out and "reach" in out and "push" in out
    )  # episodes per task
    assert main(["data", "info", "micro", "data.root=/nonexistent/x"]) == 2
    assert "/nonexistent/x" in capsys.readouterr().err


def test_tensors_match_the_rows_and_reuse_the_datasets_cache(micro_data):
    """Decoded frames and token ids come from cached `datasets` maps: equal to decoding and tokenizing each row,
    and a second load reads the cache files instead of computing again."""
    from kinsul.data.tensors import RobotTensors, VLMTensors, decode_images
    from kinsul.runs.assembly import make_fast_tokenizer, make_tokenizer

    cfg, robot, vlm = micro_data
    tok, fast, m = make_tokenizer(cfg), make_fast_tokenizer(cfg), cfg.model
    ds = robot["train"]
    data = RobotTensors.from_dataset(ds, tok, fast, m.max_text_len, m.max_fast_len)
    for i in (0, len(ds) // 2, len(ds) - 1):
        row = ds[i]
        assert np.array_equal(data.images[i].numpy(), np.asarray(row["image"].convert("RGB")))
        text = [tok.bos_id, *tok.encode(row["instruction"])][: m.max_text_len]
        assert (
            data.text_ids[i, : len(text)].tolist() == text
            and (data.text_ids[i, len(text) :] == tok.pad_id).all()
        )
        chunk = np.asarray(row["actions"], dtype=np.float32)
        ids = [tok.sep_id, *tok.action_ids(fast.encode(chunk))[: m.max_fast_len], tok.eos_id]
        assert data.fast_ids[i, : len(ids)].tolist() == ids
    q = VLMTensors.from_dataset(vlm["probe"], tok, m.max_text_len)
    assert q.answer_ids[0, : len(q.answers[0].split()) + 2].tolist() == [tok.sep_id, *tok.encode(q.answers[0]),
                                                                         tok.eos_id]  # fmt: skip
    caches = sorted(p.name for p in Path(ds.cache_files[0]["filename"]).parent.glob("cache-*.arrow"))
    assert len(caches) == 2  # decoded frames, token ids
    decode_images(ds)
    assert sorted(p.name for p in Path(ds.cache_files[0]["filename"]).parent.glob("cache-*.arrow")) == caches
