"""Run configuration: typed dataclasses, loaded from YAML, overridden with ``section.key=value``.

Every fixed field is documented once, here, in its ``help`` metadata; ``choices`` and ``check`` validate it.
The ``loss`` section names the method (``loss.method``) and holds its hyperparameters, ``model.options`` the
encoder's options and ``data.options`` the dataset source's: those are checked against the registered
method, encoder and source (:mod:`tunedcl.train.options`), whose signatures hold their one default each.
An unknown key lists the valid ones; a wrong type or value says what is allowed. Presets live in the
repository's ``configs/`` folder (also shipped inside the package) and are referred to by name.

Earlier spellings still load: ``model.width`` / ``model.stem`` (now ``model.options.*``), ``data.image_size``
(now ``data.options.image_size``) and ``loss.supcon_variant`` (now ``loss.variant``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedcl import rundir
from tunedcl.registry import Registry, first_line
from tunedcl.train.options import ConfigError, coerce, finalize

# Earlier spellings of keys, and where they live now.
RENAMED = {
    "model.width": "model.options.width",
    "model.stem": "model.options.stem",
    "data.image_size": "data.options.image_size",
    "loss.supcon_variant": "loss.variant",
}


def _opt(default: Any, help: str, choices: tuple | None = None, check: Any = None) -> Any:
    metadata = {"help": help, "choices": choices, "check": check}
    return field(default=default, metadata=metadata)


def _options(help: str) -> Any:
    """A mapping of a registered entry's options (a fresh dict per config)."""
    return field(default_factory=dict, metadata={"help": help, "choices": None, "check": None})


@dataclass(frozen=True)
class _Rule:
    """A value check with the rule it enforces, for the message (``train.epochs=0 is not allowed: ... must
    be > 0``)."""

    text: str
    test: Any

    def __call__(self, value: Any) -> bool:
        return self.test(value)


_positive = _Rule("> 0", lambda v: v > 0)
_non_negative = _Rule(">= 0", lambda v: v >= 0)
_fraction = _Rule("in (0, 1]", lambda v: 0 < v <= 1)
_unit_interval = _Rule("in [0, 1]", lambda v: 0 <= v <= 1)
_momentum = _Rule("in [0, 1)", lambda v: 0 <= v < 1)
_betas = _Rule("two numbers in [0, 1)", lambda v: all(0 <= b < 1 for b in v))
_label_groups = _Rule(
    "non-empty lists of distinct class indices >= 0, e.g. [[0, 2, 4, 6], [1, 3], [5, 7, 9], [8]]",
    lambda v: bool(v) and all(g and min(g) >= 0 for g in v) and len({c for g in v for c in g}) == sum(map(len, v)),
)


@dataclass
class DataConfig:
    dataset: str = _opt("fashion-mnist", "dataset name (tunedcl.data.list_datasets())")
    root: str | None = _opt(None, "folder to look for the data in first (else $TUNEDCL_DATA, caches)")
    download: bool = _opt(False, "download the dataset if it is not found")
    fraction: float | None = _opt(None, "keep this fraction of each class of the train split", check=_fraction)
    per_class: int | None = _opt(None, "keep this many images per class of the train split", check=_positive)
    subset_seed: int = _opt(0, "seed of the fraction / per_class / validation choice")
    validation: int = _opt(0, "hold this many training images per class out of training, to tune on (0: none)",
                           check=_non_negative)
    augment: str = _opt("crop-flip", "augmentation preset of the training views")
    last_view_augment: str | None = _opt(None, "preset of the last view (three-view variant)")
    n_views: int = _opt(2, "views per image in contrastive pretraining", check=_positive)
    train_label_groups: list[list[int]] | None = _opt(
        None, "train with these groups of class indices as the labels, each class in one group; evaluation keeps "
        "the classes (positives far apart: e.g. [[0, 2, 4, 6], [1, 3], [5, 7, 9], [8]] for Fashion-MNIST)",
        check=_label_groups,
    )
    options: dict[str, Any] = _options(
        "options of the dataset source (tunedcl list datasets), e.g. label_type: coarse (cifar100), "
        "classes: imagenet100 and image_size: 128 (image-folder)"
    )


@dataclass
class ModelConfig:
    encoder: str = _opt("small-cnn", "encoder (tunedcl list models)")
    options: dict[str, Any] = _options("options of the encoder (tunedcl list models), e.g. width: 0.5, stem: imagenet")
    projection_dim: int = _opt(128, "output size of the projection head", check=_positive)
    projection_hidden: int | None = _opt(None, "hidden size of the head (default: feature dim)", check=_positive)


@dataclass
class LossConfig:
    """The training method and its hyperparameters: ``loss.method`` names a registered method (tunedcl list
    methods); every other key of the section is one of its hyperparameters (``loss.k1``), typed and
    defaulted by the method (and its loss family), and readable as an attribute (``config.loss.k1``)."""

    method: str = _opt("tcl", "the training method (tunedcl list methods): tcl, supcon, simclr, tcl-ssl, ce, ...")
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        hyperparameters = self.__dict__.get("hyperparameters") or {}
        if name in hyperparameters:
            return hyperparameters[name]
        raise AttributeError(f"method {self.__dict__.get('method')!r} has no hyperparameter {name!r}")


@dataclass
class OptimConfig:
    optimizer: str = _opt("sgd", "sgd, adamw or lars (SGD with LARS's layer-wise trust ratio; biases and norms "
                          "excluded)", choices=("sgd", "adamw", "lars"))
    lr: float = _opt(0.1, "peak learning rate (for batch_size images; see lr_scaling)", check=_positive)
    lr_scaling: str = _opt("none", "none, or linear: lr * batch_size / 256", choices=("none", "linear"))
    momentum: float = _opt(0.9, "SGD momentum", check=_momentum)
    nesterov: bool = _opt(False, "SGD Nesterov momentum")
    weight_decay: float = _opt(1e-4, "weight decay", check=_non_negative)
    decay_bias_and_norm: bool = _opt(True, "weight decay on biases and norm parameters too (the paper's recipe)")
    betas: tuple[float, float] = _opt((0.9, 0.999), "AdamW betas", check=_betas)
    lars_eta: float = _opt(0.02, "LARS trust coefficient eta (solo-learn's CIFAR recipes)", check=_positive)
    lars_clip: bool = _opt(True, "LARS: cap each layer's rate at the global lr (solo-learn's clip_lr)")
    warmup_epochs: float = _opt(0.0, "linear warm-up from 0 to lr over this many epochs", check=_non_negative)
    min_lr_ratio: float = _opt(1e-3, "cosine decay ends at lr * min_lr_ratio", check=_unit_interval)


@dataclass
class TrainConfig:
    epochs: int = _opt(10, "training epochs", check=_positive)
    max_steps: int | None = _opt(None, "stop after this many steps (a step budget; overrides epochs)", check=_positive)
    batch_size: int = _opt(256, "images per step, over all processes", check=_positive)
    seed: int = _opt(0, "seed of initialisation, data order and augmentation")
    deterministic: bool = _opt(False, "torch.use_deterministic_algorithms (slower on CUDA)")
    device: str = _opt("auto", "auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    precision: str = _opt("auto", "auto (bf16 where supported), bf16 or fp32", choices=("auto", "bf16", "fp32"))
    channels_last: bool = _opt(True, "channels_last memory format")
    tf32: bool = _opt(False, "CUDA: TF32 matrix products (about 8x faster on Ampere and later, 10-bit mantissa)")
    gather_distributed: bool = _opt(True, "under DDP, contrast against every rank's embeddings")
    sync_batchnorm: bool = _opt(True, "under DDP on GPUs, BatchNorm statistics over the global batch (SyncBatchNorm)")
    checkpoint_every_steps: int = _opt(0, "also checkpoint every N steps (0: end of epoch only)", check=_non_negative)
    data_on_device_gib: float = _opt(
        2.0, "on a GPU, keep the training images on the device when they take at most this many GiB and a quarter "
        "of its free memory (CIFAR: 0.15 GiB), else copy each batch from pinned memory; 0: never",
        check=_non_negative,
    )
    check_finite_every: int = _opt(
        0,
        "read the loss and check it and the embeddings for NaN/Inf every N steps, one host sync each time (0: auto, "
        "every step on the CPU where a sync costs nothing, every 50 on a GPU so the host can run ahead; a "
        "checkpoint always checks first, so none holds non-finite weights)",
        check=_non_negative,
    )
    threads: int | None = _opt(None, "torch CPU threads (default: torch's choice)", check=_positive)
    tensorboard: bool = _opt(True, "write TensorBoard scalars when tensorboard is installed")
    log_gradients: bool = _opt(
        False, "log gradient magnitudes and denominator shares (mean over 8-15 batches per epoch; tunedcl.analysis)"
    )


@dataclass
class EvalConfig:
    linear_probe: str = _opt(
        "fast",
        "fast (cached features), paper (augmented images), both, none",
        choices=("fast", "paper", "both", "none"),
    )
    probe_epochs: int = _opt(100, "epochs of the fast probe", check=_positive)
    paper_probe_epochs: int = _opt(50, "epochs of the paper's probe protocol (lr 0.5)", check=_positive)
    knn_k: int = _opt(200, "neighbours of the weighted kNN", check=_positive)
    knn_temperature: float = _opt(0.1, "temperature of the kNN weights", check=_positive)
    every_epochs: int = _opt(0, "also evaluate (kNN) every N epochs (0: at the end only)", check=_non_negative)
    batch_size: int = _opt(512, "batch size of feature extraction", check=_positive)
    geometry: bool = _opt(False, "also measure alignment, uniformity and tolerance of 2,000 test features")


@dataclass
class Config:
    name: str = _opt("custom", "a short name for the run")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "name"}


def _section_fields(section: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def set_value(config: Config, key: str, value: Any, raw: str | None = None) -> None:
    """Set one field. ``raw`` is the override's text: string fields take it as typed when YAML read it
    as something else (``name=1.0``, ``data.root=no``). Registered options (the method's hyperparameters,
    ``model.options.*``, ``data.options.*``) are kept as given and typed by :func:`finalize`."""
    if key in RENAMED and value is None:  # an earlier config.yaml's unset field (data.image_size: null)
        return
    key = RENAMED.get(key, key)
    if raw is not None and value is not None and not isinstance(value, str):
        value = _raw_if_string_field(config, key, value, raw)
    if key == "name":
        config.name = _check_name(coerce("name", value, str))
        return
    section_name, _, field_name = key.partition(".")
    if section_name not in SECTIONS or not field_name:
        raise ConfigError(
            f"unknown config key {key!r}; keys are 'name' and section.field with sections "
            f"{', '.join(SECTIONS)} (e.g. loss.k1=1000)"
        )
    section = getattr(config, section_name)
    if section_name == "loss" and field_name != "method":
        config.loss.hyperparameters[field_name] = value
        return
    field_name, _, option = field_name.partition(".")
    fields = _section_fields(section)
    if field_name == "options" and "options" in fields:
        _set_options(section, key, option, value)
        return
    if field_name not in fields or option:
        raise ConfigError(f"unknown config key {key!r}; valid keys in {section_name}: {', '.join(fields)}")
    spec = fields[field_name]
    hints = typing.get_type_hints(type(section))
    coerced = coerce(key, value, hints[field_name])
    choices, check = spec.metadata.get("choices"), spec.metadata.get("check")
    if choices is not None and coerced not in choices:
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        raise ConfigError(f"{key} must be one of {allowed}; got {coerced!r}")
    if check is not None and coerced is not None and not check(coerced):
        rule = f" must be {check.text}" if isinstance(check, _Rule) else ""
        raise ConfigError(f"{key}={coerced!r} is not allowed: {spec.metadata['help']}{rule}")
    setattr(section, field_name, coerced)


def _check_name(name: str) -> str:
    """A run name becomes part of a folder name (runs/<name>-<time>): one path component, no more."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ConfigError(f"name must be a plain folder name (not empty, no '/', '\\', '.' or '..'); got {name!r}")
    return name


def _set_options(section: Any, key: str, option: str, value: Any) -> None:
    """``model.options.width=0.5``, or a whole mapping (``options: {width: 0.5}`` in YAML)."""
    if option:
        section.options[option] = value
    elif isinstance(value, dict):
        section.options.update(value)
    else:
        raise ConfigError(f"{key} must be a mapping of option: value; got {value!r}")


def _raw_if_string_field(config: Config, key: str, value: Any, raw: str) -> Any:
    section_name, _, field_name = key.partition(".")
    if key == "name":
        return raw.strip()
    section = getattr(config, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        return value
    tp = typing.get_type_hints(type(section)).get(field_name)
    if tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)):
        return raw.strip()
    return value


def _flatten(data: dict[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section {key!r} must be a mapping; got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading configs needs PyYAML: pip install 'tunedcl[train]'") from error
    return yaml


def _read_yaml(path: Path) -> Any:
    """A YAML file's content, or a one-line ConfigError naming the file and where the syntax breaks."""
    yaml = _yaml()
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None


def preset_dirs() -> list[Path]:
    """Where preset names are looked up: the package's copy, then a repository checkout's configs/."""
    here = Path(__file__).resolve()
    return [here.parent.parent / "configs", here.parents[3] / "configs"]


def config_presets() -> Registry[Path]:
    """The preset YAML files by name, described by their first comment line (the package's copy first)."""
    presets: Registry[Path] = Registry("preset")
    for folder in preset_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.stem not in presets:
                comments = []
                for line in path.read_text().splitlines():
                    if not line.startswith("#"):
                        break
                    comments.append(line.lstrip("# "))
                presets.add(path.stem, path, description=first_line("\n".join(comments)))
    return presets


def list_presets() -> list[str]:
    return config_presets().names()


def resolve_config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    presets = config_presets()
    if name_or_path in presets:
        return presets.get(name_or_path)
    raise ConfigError(f"unknown config {name_or_path!r}: not a file, and not a preset ({', '.join(presets.names())})")


def parse_override(text: str) -> tuple[str, Any, str]:
    """``section.key=value`` -> (key, value read as YAML, the raw text); see :func:`tunedcl.rundir.parse_override`."""
    try:
        return rundir.parse_override(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a preset name or YAML file, then apply ``key=value`` overrides, validating everything."""
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections; got {type(data).__name__}")
    config = Config(name=path.stem)
    for key, value in _flatten(data, str(path)).items():
        set_value(config, key, value)
    for text in overrides:
        key, value, raw = parse_override(text)
        set_value(config, key, value, raw)
    finalize(config)
    return config


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`config_to_dict` output (a run's config.yaml), validating it. A key another
    method (encoder, dataset) takes is dropped whatever its value: a config.yaml written by an earlier tunedcl
    holds every method's fields, and the run it records did not use them."""
    config = Config()
    for key, value in _flatten(data, "config").items():
        set_value(config, key, value)
    finalize(config, saved=True)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["optim"]["betas"] = list(config.optim.betas)
    loss = data["loss"]
    data["loss"] = {"method": loss["method"], **loss["hyperparameters"]}
    return data


def dump_config(config: Config) -> str:
    return _yaml().safe_dump(config_to_dict(config), sort_keys=False)


# Fields that cannot change a run's result: two runs that differ only in these are the same experiment.
# (train.threads and train.device do count: they change floating-point reduction order.)
RESULT_NEUTRAL = ("name", "train.tensorboard", "train.checkpoint_every_steps", "train.check_finite_every",
                  "train.data_on_device_gib")
# What `tunedcl train --resume` may change in a run: how long it trains (the schedule stretches from the
# step it resumes at), the learning rate (to recover from a divergence), where it runs, and everything
# about evaluation (eval.*) and logging. Anything else would make the checkpoint a different run's.
RESUMABLE = ("train.epochs", "train.max_steps", "optim.lr", "train.threads", "train.device", *RESULT_NEUTRAL)


def flat_config(config: Config) -> dict[str, Any]:
    """The config as ``{"section.key": value}`` (options as ``model.options.width``), plain values only."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = list(value) if isinstance(value, tuple) else value

    add("", config_to_dict(config))
    return flat


def load_run_config(run_dir: Path) -> Config:
    """The config a run directory was started with (its config.yaml), validated."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} holds no run (no config.yaml)")
    return config_from_dict(_read_yaml(path))


def check_combination(config: Config) -> None:
    """Rules across fields."""
    from tunedcl.methods import METHODS

    method = METHODS.get(config.loss.method)
    if method.fixed_views is None and config.data.n_views < method.min_views:
        raise ConfigError(
            f"data.n_views must be >= {method.min_views} for "
            f"{'self-supervised ' if not method.uses_labels else ''}method {config.loss.method!r}"
        )
    if config.data.fraction is not None and config.data.per_class is not None:
        raise ConfigError("data.fraction and data.per_class cannot both be set; choose one")
    if config.optim.nesterov and config.optim.momentum == 0:
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0; got optim.momentum=0.0")
