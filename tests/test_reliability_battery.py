"""The fast part of docs/tools/reliability.py, in the test command: every bad input that needs no trained run
(the `config` verb: values, names, interpolation, presets, hostile plugins) exits non-zero with one line and
no traceback. The whole battery (signals, full disks, immutable folders, damaged stores) rewrites
docs/reliability.md: `python docs/tools/reliability.py`."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _battery():
    spec = importlib.util.spec_from_file_location("reliability", ROOT / "docs" / "tools" / "reliability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


battery = _battery()
FAST = [
    (name, argv, *more)
    for name, argv, *more in battery.cases(Path("/nonexistent-root"))
    if argv[0] == "config"
]


def test_the_fast_part_is_most_of_the_config_battery():
    assert len(FAST) >= 45


@pytest.mark.parametrize("case", FAST, ids=[c[0] for c in FAST])
def test_a_bad_input_is_one_line_and_a_non_zero_exit(case, tmp_path):
    name, argv, *more = case
    opts = more[0] if more else {}
    if "plugin" in opts:
        battery.plugins(tmp_path / "plugins")
    with battery.machine(tmp_path, opts) as skipped:
        assert not skipped
        code, said = battery.run_case(argv, tmp_path)
    assert code not in (0, "TRACEBACK"), f"{name}: {code} {said}"
    assert said.startswith(("kinsul", "usage:")), f"{name}: {said}"
    assert not any(p.name != "plugins" for p in tmp_path.iterdir()), f"{name} wrote into the working folder"
