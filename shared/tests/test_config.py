from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from perception_shared.config import config_from_dict, config_to_dict, load_config, resolve_config_path, save_config
from perception_shared.errors import ConfigError


@dataclass
class Optim:
    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    milestones: list[int] = field(default_factory=lambda: [10, 20])


@dataclass
class Cfg:
    seed: int = 0
    data_root: Path = Path("data")
    weights: str | None = None
    amp: bool = False
    optim: Optim = field(default_factory=Optim)
    extra: dict[str, float] = field(default_factory=dict)


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_defaults_file_and_overrides_in_order(tmp_path):
    p = write(tmp_path, {"seed": 3, "optim": {"lr": 0.1, "milestones": [5]}})
    cfg = load_config(Cfg, p, ["optim.lr=0.01", "optim.name=sgd", "weights=/w.pth", "extra.a=2"])
    assert cfg.seed == 3
    assert cfg.optim.lr == 0.01 and cfg.optim.name == "sgd"
    assert cfg.optim.milestones == [5]
    assert cfg.optim.betas == (0.9, 0.999)
    assert cfg.weights == "/w.pth"
    assert cfg.extra == {"a": 2.0}
    assert isinstance(cfg.data_root, Path)


def test_int_accepted_for_float_but_not_string(tmp_path):
    assert load_config(Cfg, write(tmp_path, {"optim": {"lr": 1}})).optim.lr == 1.0
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, write(tmp_path, {"optim": {"lr": "fast"}}))
    assert "optim.lr" in str(e.value) and "c.yaml" in str(e.value) and "number" in str(e.value)


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, write(tmp_path, {"optim": {"lrr": 0.1}}))
    msg = str(e.value)
    assert "optim.lrr" in msg and "c.yaml" in msg and "lr" in msg and "milestones" in msg


def test_unknown_override_key_and_malformed_override():
    with pytest.raises(ConfigError, match="optim.momentum"):
        load_config(Cfg, None, ["optim.momentum=0.9"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(Cfg, None, ["seed"])
    with pytest.raises(ConfigError, match="seed.x"):
        load_config(Cfg, None, ["seed.x=1"])


def test_type_errors_bool_int_literal_tuple(tmp_path):
    for bad, key in [({"amp": "yes"}, "amp"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"),
                     ({"optim": {"name": "rmsprop"}}, "optim.name"), ({"optim": {"betas": [0.9]}}, "optim.betas")]:
        with pytest.raises(ConfigError) as e:
            load_config(Cfg, write(tmp_path, bad))
        assert key in str(e.value)


def test_file_problems_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(Cfg, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Cfg, lst)


def test_validation_in_post_init_is_a_config_error(tmp_path):
    @dataclass
    class Positive:
        n: int = 1

        def __post_init__(self):
            if self.n < 1:
                raise ValueError(f"n must be at least 1, got {self.n}")

    with pytest.raises(ConfigError, match="n must be at least 1"):
        load_config(Positive, None, ["n=0"])


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(Cfg, None, ["optim.lr=0.5", "weights=null"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(Cfg, path) == cfg
    assert config_from_dict(Cfg, config_to_dict(cfg)) == cfg


def test_resolve_config_path_file_and_unknown_name(tmp_path):
    p = write(tmp_path, {"seed": 1})
    assert resolve_config_path("perception_shared", p) == p
    with pytest.raises(ConfigError, match="nosuchconfig"):
        resolve_config_path("perception_shared", "nosuchconfig")
