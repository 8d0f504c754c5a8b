"""Config loading: YAML + overrides, unknown keys with a suggestion, type and value checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeplab.train.config import Config, ConfigError, config_to_dict, load_config, valid_keys

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    path = _write(tmp_path, "train:\n  iterations: 50\nmodel:\n  arch: deeplabv3-mobilenetv2\n")
    cfg = load_config(path, ["train.lr=0.01", "data.scale_range=[1, 1.5]", "output=out"])
    assert cfg.train.iterations == 50 and cfg.model.arch == "deeplabv3-mobilenetv2"
    assert cfg.train.lr == 0.01 and cfg.data.scale_range == [1.0, 1.5] and cfg.output == "out"
    assert cfg.train.momentum == Config().train.momentum
    assert isinstance(cfg.train.lr, float)


def test_unknown_key_suggests_closest(tmp_path):
    path = _write(tmp_path, "train:\n  iteratons: 5\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: unknown config key 'train.iteratons' \(did you mean 'train.iterations'\?\)"
    ):
        load_config(path)
    with pytest.raises(ConfigError, match="did you mean 'train.weight_decay'"):
        load_config(None, ["train.weightdecay=0.1"])
    with pytest.raises(ConfigError, match="did you mean 'data.crop_size'"):
        load_config(None, ["train.crop_size=3"])
    with pytest.raises(ConfigError, match="override .nothing_like_it=3.: unknown config key .nothing_like_it.$"):
        load_config(None, ["nothing_like_it=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.iterations=ten", "train.iterations must be int"),
        ("train.iterations=0", "train.iterations must be > 0"),
        ("train.bn_mode=fozen", "train.bn_mode must be one of train, frozen"),
        ("train.precision=fp8", "train.precision must be one of"),
        ("model.train_scales=1.0", "model.train_scales must be a list"),
        ("data.scale_range=[2, 1]", "data.scale_range must be"),
        ("train.accumulate=3", "multiple of train.accumulate"),
        ("train=3", "unknown config key 'train'"),
        ("noequals", "expected key=value"),
        ("train.lr=.nan", "train.lr must be a finite number"),
        ("train.lr=.inf", "train.lr must be a finite number"),
        ("train.weight_decay=-.inf", "train.weight_decay must be a finite number"),
        ("data.scale_range=[0.5, .inf]", "data.scale_range must be a finite number"),
    ],
)
def test_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [\n"))
    with pytest.raises(ConfigError, match="'train' must be a mapping"):
        load_config(_write(tmp_path, "train: 3\n"))


def test_round_trip():
    cfg = load_config(None, ["model.multi_grid=[1, 2, 4]"])
    assert load_config(None, []) != cfg
    from deeplab.train.config import config_from_dict

    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert "train.iterations" in valid_keys() and "model.options" in valid_keys()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.train.iterations > 0
    # every key of every section is written out (and so documented) in the file
    import yaml

    raw = yaml.safe_load(path.read_text())
    written = {f"{s}.{k}" for s, v in raw.items() if isinstance(v, dict) for k in v} | set(raw)
    missing = [k for k in valid_keys() if k not in written]
    assert not missing, f"{path.name} does not set {missing}"
