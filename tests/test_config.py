"""The config convention every stage follows: presets, dotted overrides, clear errors, JSON round-trip."""
import dataclasses
import subprocess
import sys
from typing import ClassVar, Literal

import pytest

from labkit import config


@dataclasses.dataclass
class Inner:
    r: int = 8
    targets: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclasses.dataclass
class Outer:
    seed: int = 0
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    mixture: dict[str, float] = dataclasses.field(default_factory=lambda: {"atom_base": 1.0})
    inner: Inner = dataclasses.field(default_factory=Inner)
    PRESETS: ClassVar[dict] = {"smoke": {"lr": 0.5, "inner.r": 2}}


def test_preset_then_overrides_parse_strings_by_type():
    cfg = config.resolve(Outer, "smoke", {"seed": "3", "flag": "true", "inner.targets": "a,b",
                                          "mode": "b", "path": "none", "mixture.train_A": "0.5"})
    assert (cfg.seed, cfg.lr, cfg.flag, cfg.mode, cfg.path) == (3, 0.5, True, "b", None)
    assert cfg.inner == Inner(r=2, targets=["a", "b"])
    assert cfg.mixture == {"atom_base": 1.0, "train_A": 0.5}


def test_json_round_trip(tmp_path):
    cfg = config.resolve(Outer, "smoke", {"mixture": '{"train_B": 2}', "path": "/x"})
    config.save(cfg, tmp_path / "config.json")
    assert config.load(Outer, tmp_path / "config.json") == cfg


@pytest.mark.parametrize("key, value, needle", [
    ("sed", "1", "Did you mean 'seed'"),
    ("inner.rr", "1", "'inner.rr'"),
    ("seed", "abc", "expected int"),
    ("mode", "c", "one of 'a', 'b'"),
    ("inner", "1", "inner.r"),
])
def test_bad_keys_and_values_name_the_problem(key, value, needle):
    with pytest.raises(config.ConfigError, match=needle.replace("(", r"\(")):
        config.resolve(Outer, None, {key: value})


def test_unknown_preset():
    with pytest.raises(config.ConfigError, match="smoke"):
        config.resolve(Outer, "huge")


def test_cli_unknown_key_exits_2_and_names_it():
    proc = subprocess.run([sys.executable, "-m", "labkit", "atomic", "--set", "nosuchkey=1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nosuchkey" in proc.stderr and "n_tests" in proc.stderr


def test_cli_unknown_stage_exits_2():
    proc = subprocess.run([sys.executable, "-m", "labkit", "nostage"], capture_output=True, text=True)
    assert proc.returncode == 2 and "nostage" in proc.stderr
