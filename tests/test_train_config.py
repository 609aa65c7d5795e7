"""Config: presets load, overrides apply, every bad key or value says what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunedcl.train.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
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
        ("loss.method=nosuchmethod", r"loss.method: unknown method 'nosuchmethod'; known methods: .*ce, .*simclr, .*supcon, .*tcl, .*tcl-ssl"),
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


# --- registered options: the method's hyperparameters, model.options, data.options ----------------------------


def test_method_hyperparameters_take_the_method_s_one_default() -> None:
    tcl = load_config("quick").loss
    assert (tcl.temperature, tcl.k1, tcl.k2, tcl.k1_uses_temperature) == (0.1, 5000.0, 1.0, False)
    simclr = load_config("quick", ["loss.method=simclr"]).loss  # NT-Xent's own default, not TCL's
    assert simclr.hyperparameters == {"temperature": 0.5, "chunk_size": None, "similarity_dtype": None,
                                      "queue_size": 0}
    assert load_config("quick", ["loss.method=ce"]).loss.hyperparameters == {}
    assert load_config("quick", ["loss.method=supcon", "loss.supcon_variant=in"]).loss.variant == "in"  # old key


def test_another_method_s_key_is_dropped_only_at_its_default() -> None:
    # A sweep base (k1 at TCL's default) compared across methods: SupCon has no k1, nothing is lost.
    supcon = load_config("study-fashion-mnist", ["loss.method=supcon"])
    assert "k1" not in supcon.loss.hyperparameters and "k1:" not in dump_config(supcon)
    with pytest.raises(ConfigError, match=r"loss.k1 must be 5000.0 for method supcon, which does not use it "
                                          r"\(it belongs to method tcl, .*method tcl-ssl\); leave it out"):
        load_config("quick", ["loss.method=supcon", "loss.k1=100"])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.options.widht=0.5"], r"unknown config key 'model.options.widht'; options of model small-cnn: width"),
        (["model.options.width=abc"], r"model.options.width must be a finite number; got 'abc'"),
        (["model.options.stem=imagenet"], r"model.options.stem must be 'cifar' for model small-cnn, which does not"),
        (["model.encoder=resnt18"], r"model.encoder: unknown model 'resnt18'; did you mean 'resnet18'\?"),
        (["data.options.label_type=coarse"], r"data.options.label_type must be 'fine' for dataset fashion-mnist"),
        (["data.options.colour=1"], r"unknown config key 'data.options.colour'; options of dataset fashion-mnist: verify"),
        (["data.dataset=cifar1000"], r"data.dataset: unknown dataset 'cifar1000'; did you mean 'cifar100'\?"),
        (["data.augment=bogus"], r"data.augment: unknown augmentation 'bogus'; known augmentations: autoaug"),
        (["loss.method=tcl-sll"], r"loss.method: unknown method 'tcl-sll'; did you mean 'tcl-ssl'\?"),
        (["model.options=3"], r"model.options must be a mapping of option: value; got 3"),
    ],
)
def test_registered_names_and_options_say_what_is_allowed(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("quick", overrides)


def test_options_reach_the_constructors() -> None:
    config = load_config("quick", ["model.encoder=resnet18", "model.options.width=0.25", "model.stem=imagenet"])
    assert config.model.options == {"width": 0.25, "stem": "imagenet"}  # model.stem is the earlier spelling
    from tunedcl.train.builders import build_encoder

    encoder = build_encoder(config, in_channels=1)
    assert encoder.feature_dim == 128 and isinstance(encoder.stem[0], torch.nn.Conv2d)
    assert encoder.stem[0].kernel_size == (7, 7)  # the ImageNet stem
    assert load_config("cifar100-resnet50", ["data.options.label_type=coarse"]).data.options == {
        "label_type": "coarse"
    }


def test_cifar100_coarse_labels_are_a_config_value(tmp_path: Path) -> None:
    from _data_files import make_cifar_batches, write_cifar_tar
    from tunedcl.train.assemble import load_training_data

    write_cifar_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", make_cifar_batches("cifar100", 20))
    common = [f"data.root={tmp_path}", "data.options.verify=false"]
    fine = load_training_data(load_config("cifar100-resnet50", common))
    coarse = load_training_data(load_config("cifar100-resnet50", [*common, "data.options.label_type=coarse"]))
    assert (fine.num_classes, coarse.num_classes) == (100, 20)


def test_the_imagenet100_preset_reads_only_the_listed_classes(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow not installed (pip install 'tunedcl[images]')")
    from _data_files import make_image_tree
    from tunedcl.data.sources.image_folder import imagenet100_classes
    from tunedcl.train.assemble import load_training_data

    wnids = imagenet100_classes()
    make_image_tree(tmp_path / "tree", [*wnids, "n99999901", "n99999902"], n_train=1, n_test=1)
    config = load_config("imagenet100-resnet50", [f"data.root={tmp_path / 'tree'}", "data.options.image_size=8",
                                                  f"data.options.cache_dir={tmp_path / 'cache'}"])
    dataset = load_training_data(config)
    assert dataset.classes == tuple(sorted(wnids)) and len(dataset.train) == 100


def test_every_registry_is_listed_with_descriptions() -> None:
    from tunedcl.cli import main

    for kind in ("losses", "methods", "models", "datasets", "augmentations", "presets"):
        from tunedcl.listing import registries

        registry = registries()[kind]
        assert len(registry) >= 3 and all(description for _, description in registry.describe()), kind
    assert main(["list", "methods"]) == 0
