from dataclasses import asdict

import pytest
from omegaconf import OmegaConf

from kinsul.cli import main
from kinsul.config import ConfigError, KinsulConfig, load_config, save_config
from kinsul.config.loader import PRESET_DIR


def error(overrides=(), preset=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(preset, overrides)
    return str(info.value)


def test_defaults_validate_and_override():
    cfg = load_config(overrides=["world.image_size=32", "concepts.heldout_colours=[red]"])
    assert cfg.world.image_size == 32 and cfg.concepts.heldout_colours == ["red"]
    assert cfg.world.max_objects == KinsulConfig().world.max_objects


def test_unknown_key_names_full_path_and_nearest():
    msg = error(["data.robot_episodes.trian=3"])
    assert "'data.robot_episodes.trian'" in msg and "did you mean 'data.robot_episodes.train'" in msg
    assert "did you mean 'world'" in error(["wrld.image_size=3"])


def test_wrong_type_names_key_value_and_expected_type():
    msg = error(["world.image_size=abc"])
    assert "'world.image_size'" in msg and "'abc'" in msg and "expected int" in msg
    msg = error(["data.robot_episodes=5"])
    assert "'data.robot_episodes'" in msg and "got 5" in msg and "train" in msg


def test_out_of_range_names_full_path_value_and_range():
    msg = error(["data.robot_episodes.probe=-1"])
    assert "'data.robot_episodes.probe'" in msg and "got -1" in msg and "[0, 10000000]" in msg
    msg = error(["world.max_objects=9"])
    assert "'world.max_objects'" in msg and "got 9" in msg
    msg = error(["concepts.heldout_shapes=[hexagon]"])
    assert "'concepts.heldout_shapes'" in msg and "'hexagon'" in msg and "star" in msg


def test_bad_override_syntax_and_unknown_preset():
    assert "key.path=value" in error(["world.image_size"])
    msg = error(preset="mikro")
    assert "did you mean 'micro'" in msg and "micro" in msg


def test_presets_only_override_what_differs():
    """Every leaf a preset sets must differ from the default: presets are diffs, not copies."""
    defaults = OmegaConf.to_container(OmegaConf.structured(KinsulConfig))
    for path in PRESET_DIR.glob("*.yaml"):
        layer = OmegaConf.to_container(OmegaConf.load(path))
        layer.pop("base", None)
        layer.pop("sweep", None)

        def walk(node, ref, key="", path=path):
            for k, v in node.items():
                if isinstance(v, dict) and isinstance(ref.get(k), dict):
                    walk(v, ref[k], f"{key}{k}.")
                else:
                    assert ref.get(k) != v, f"{path.name} repeats the default of {key}{k}"

        walk(layer, defaults)


def test_resolved_config_saves_and_reloads(tmp_path):
    cfg = load_config("micro", ["world.image_size=48"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert asdict(load_config(str(path))) == asdict(cfg)


def test_cli_config_prints_and_rejects(capsys):
    assert main(["config", "micro", "world.image_size=40"]) == 0
    assert "image_size: 40" in capsys.readouterr().out
    assert main(["config", "world.image_siz=40"]) == 2
    assert "did you mean 'world.image_size'" in capsys.readouterr().err


def test_cli_flags_may_follow_the_overrides():
    from kinsul.cli import parse

    for argv in (["sweep", "paper", "--resume", "trainer.threads=1", "seed=2"],
                 ["sweep", "paper", "trainer.threads=1", "--resume", "seed=2"]):  # fmt: skip
        ns = parse(argv)
        assert ns.preset == "paper" and ns.resume and ns.overrides == ["trainer.threads=1", "seed=2"]
    with pytest.raises(SystemExit):
        parse(["sweep", "paper", "--bogus"])


def test_a_tracking_uri_mlflow_would_refuse_fails_at_load():
    for bad in ("file:///tmp/mlruns", "./mlruns", "mlruns"):
        with pytest.raises(ConfigError, match="'tracking.uri'"):
            load_config(None, [f"tracking.uri={bad}"])
    assert load_config(None, ["tracking.uri=http://127.0.0.1:5000"]).tracking.uri.startswith("http")


@pytest.mark.integration
def test_presets_ship_inside_the_wheel(tmp_path):
    """`pip install .` (not editable) must find the presets: they are package data (kinsul/presets -> ablations/)."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy: setuptools writes build/ beside the sources
    src.mkdir()
    shutil.copy(repo / "pyproject.toml", src)
    shutil.copy(repo / "README.md", src)
    shutil.copytree(repo / "ablations", src / "ablations")
    shutil.copytree(
        repo / "kinsul", src / "kinsul", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("kinsul-*.whl"))).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("kinsul/presets/") and n.endswith(".yaml")}
    assert {p.stem for p in (repo / "ablations").glob("*.yaml")} == shipped


def test_a_yaml_boolean_given_to_a_text_field_is_refused_and_the_quoted_word_taken():
    with pytest.raises(ConfigError, match=r"trainer.run_name': got the YAML boolean False, expected text"):
        load_config(overrides=["trainer.run_name=off"])  # would have become the run name "False"
    assert load_config(overrides=["trainer.run_name='off'"]).trainer.run_name == "off"


def test_keys_added_later_leave_default_run_names_as_they_were():
    """A run started before data.robot_source/lerobot/metaworld and eval.env existed resumes under its name
    (`kinsul train ... --resume` finds it by the default name). Pinned: the names given out at 066a47e."""
    from kinsul.runs.assembly import run_name

    assert run_name(load_config("micro")) == "ki-s0-f008970c"
    assert run_name(load_config("quick")) == "ki-s0-f2498cd6"
    assert run_name(load_config("micro", ["eval.env=none", "trainer.curve_every=0"])) != "ki-s0-f008970c"
