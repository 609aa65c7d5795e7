"""Config: presets load, overrides apply, every bad key or value says what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunedcl.train.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
)


def test_every_preset_loads() -> None:
    names = list_presets()
    for required in ("default", "quick"):
        assert required in names
    for name in names:
        config = load_config(name)
        assert isinstance(config, Config) and config.name == name


def test_default_is_supervised_tcl_on_fashion_mnist_with_the_small_cnn() -> None:
    config = load_config()
    assert (config.loss.method, config.data.dataset, config.model.encoder) == ("tcl", "fashion-mnist", "small-cnn")
    assert (config.loss.k1, config.loss.k2, config.loss.temperature) == (5000.0, 1.0, 0.1)


def test_overrides_are_typed() -> None:
    config = load_config("quick", ["loss.k1=1e3", "train.epochs=2", "loss.chunk_size=null",
                                   "optim.betas=[0.8, 0.9]", "train.channels_last=false", "name=x"])
    assert config.loss.k1 == 1000.0 and isinstance(config.loss.k1, float)
    assert config.train.epochs == 2 and config.loss.chunk_size is None
    assert config.optim.betas == (0.8, 0.9) and config.train.channels_last is False and config.name == "x"


@pytest.mark.parametrize(
    "override,message",
    [
        ("loss.k3=1", r"unknown config key 'loss.k3'; valid keys in loss: method, temperature, k1, k2"),
        ("losses.k1=1", r"unknown config key 'losses.k1'; keys are 'name' and section.field with sections data, model, loss"),
        ("k1=1", r"unknown config key 'k1'"),
        ("train.epochs=2.5", r"train.epochs must be an integer; got 2.5"),
        ("train.epochs=0", r"train.epochs=0 is not allowed: training epochs"),
        ("loss.k1=-1", r"loss.k1=-1.0 is not allowed"),
        ("loss.method=byol", r"loss.method: unknown method 'byol'; known methods: ce, simclr, supcon, tcl, tcl-ssl"),
        ("train.channels_last=maybe", r"train.channels_last must be true or false; got 'maybe'"),
        ("optim.betas=[0.9]", r"optim.betas must be a list of 2 numbers"),
        ("loss.temperature=abc", r"loss.temperature must be a finite number; got 'abc'"),
        ("train.epochs", r"override 'train.epochs' must look like section.key=value"),
        ("data.fraction=1.5", r"data.fraction=1.5 is not allowed"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("quick", [override])


def test_combination_rules() -> None:
    with pytest.raises(ConfigError, match=r"data.fraction and data.per_class cannot both be set"):
        load_config("quick", ["data.fraction=0.5"])
    with pytest.raises(ConfigError, match=r"loss.queue_size must be 0 for method ce"):
        load_config("quick", ["loss.method=ce", "loss.queue_size=10"])
    with pytest.raises(ConfigError, match=r"data.n_views must be >= 2 for self-supervised method 'simclr'"):
        load_config("quick", ["loss.method=simclr", "data.n_views=1"])


def test_unknown_preset_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config 'nope': not a file, and not a preset \(.*default"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: 3\n")
    with pytest.raises(ConfigError, match=r"section 'loss' must be a mapping"):
        load_config(str(bad))


def test_round_trip_through_dict() -> None:
    config = load_config("default", ["loss.k2=3", "optim.optimizer=adamw"])
    assert config_from_dict(config_to_dict(config)) == config
