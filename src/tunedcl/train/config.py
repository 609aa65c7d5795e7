"""Run configuration: typed dataclasses, loaded from YAML, overridden with ``section.key=value``.

Every field is documented once, here, in its ``help`` metadata; ``choices`` and ``check`` validate it.
An unknown key lists the valid ones; a wrong type or value says what is allowed. Presets live in the
repository's ``configs/`` folder (also shipped inside the package) and are referred to by name.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("tcl", "supcon", "simclr", "tcl-ssl", "ce")
SUPERVISED_METHODS = ("tcl", "supcon", "ce")


def _opt(default: Any, help: str, choices: tuple | None = None, check: Any = None) -> Any:
    metadata = {"help": help, "choices": choices, "check": check}
    return field(default=default, metadata=metadata)


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _fraction(value: float) -> bool:
    return 0 < value <= 1


@dataclass
class DataConfig:
    dataset: str = _opt("fashion-mnist", "dataset name (tunedcl.data.list_datasets())")
    root: str | None = _opt(None, "folder to look for the data in first (else $TUNEDCL_DATA, caches)")
    download: bool = _opt(False, "download the dataset if it is not found")
    fraction: float | None = _opt(None, "keep this fraction of each class of the train split", check=_fraction)
    per_class: int | None = _opt(None, "keep this many images per class of the train split", check=_positive)
    subset_seed: int = _opt(0, "seed of the fraction / per_class choice")
    augment: str = _opt("crop-flip", "augmentation preset of the training views")
    last_view_augment: str | None = _opt(None, "preset of the last view (three-view variant)")
    n_views: int = _opt(2, "views per image in contrastive pretraining", check=_positive)
    image_size: int | None = _opt(None, "image-folder datasets: resize to this size")


@dataclass
class ModelConfig:
    encoder: str = _opt("small-cnn", "encoder (tunedcl.models.list_models())")
    width: float = _opt(1.0, "width multiplier of the encoder", check=_positive)
    stem: str = _opt("cifar", "ResNet stem", choices=("cifar", "imagenet"))
    projection_dim: int = _opt(128, "output size of the projection head", check=_positive)
    projection_hidden: int | None = _opt(None, "hidden size of the head (default: feature dim)", check=_positive)


@dataclass
class LossConfig:
    method: str = _opt("tcl", "tcl, supcon, simclr, tcl-ssl (TCL, instance positives) or ce", choices=METHODS)
    temperature: float = _opt(0.1, "loss temperature tau", check=_positive)
    k1: float = _opt(5000.0, "TCL: weight of the hard-positive term", check=_non_negative)
    k2: float = _opt(1.0, "TCL: weight of the negatives", check=_positive)
    k1_uses_temperature: bool = _opt(False, "TCL: exp(-s/tau) instead of exp(-s) in the k1 term")
    supcon_variant: str = _opt("out", "SupCon: L_out or L_in", choices=("out", "in"))
    queue_size: int = _opt(0, "memory queue of past embeddings (0: none)", check=_non_negative)
    chunk_size: int | None = _opt(None, "loss chunk size (None: automatic, 0: dense)", check=_non_negative)
    similarity_dtype: str | None = _opt(None, "bfloat16: similarity products in bf16", choices=(None, "bfloat16"))


@dataclass
class OptimConfig:
    optimizer: str = _opt("sgd", "sgd or adamw", choices=("sgd", "adamw"))
    lr: float = _opt(0.1, "peak learning rate (for batch_size images; see lr_scaling)", check=_positive)
    lr_scaling: str = _opt("none", "none, or linear: lr * batch_size / 256", choices=("none", "linear"))
    momentum: float = _opt(0.9, "SGD momentum", check=lambda v: 0 <= v < 1)
    nesterov: bool = _opt(False, "SGD Nesterov momentum")
    weight_decay: float = _opt(1e-4, "weight decay", check=_non_negative)
    decay_bias_and_norm: bool = _opt(True, "weight decay on biases and norm parameters too (the paper's recipe)")
    betas: tuple[float, float] = _opt((0.9, 0.999), "AdamW betas")
    warmup_epochs: float = _opt(0.0, "linear warm-up from 0 to lr over this many epochs", check=_non_negative)
    min_lr_ratio: float = _opt(1e-3, "cosine decay ends at lr * min_lr_ratio", check=lambda v: 0 <= v <= 1)


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
    gather_distributed: bool = _opt(True, "under DDP, contrast against every rank's embeddings")
    checkpoint_every_steps: int = _opt(0, "also checkpoint every N steps (0: end of epoch only)", check=_non_negative)
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

    @property
    def supervised(self) -> bool:
        return self.loss.method in SUPERVISED_METHODS


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "name"}


class ConfigError(ValueError):
    """A config value or key that is not allowed (the message says what is)."""


def _section_fields(section: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the field type ``tp`` (int, float, str, bool, X | None, tuple[float, float])."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{key} must be {' or '.join(_type_name(o) for o in options)}; got {value!r}")
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise ConfigError(f"{key} must be a list of {len(items)} numbers; got {value!r}")
        return tuple(_coerce(key, v, t) for v, t in zip(value, items, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer; got {value!r}")
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4 as a string: accept it as a number
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{key} must be a finite number; got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string; got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


def _set(config: Config, key: str, value: Any, raw: str | None = None) -> None:
    """Set one field. ``raw`` is the override's text: string fields take it as typed when YAML read it
    as something else (``name=1.0``, ``data.root=no``)."""
    if raw is not None and value is not None and not isinstance(value, str):
        value = _raw_if_string_field(config, key, value, raw)
    if key == "name":
        config.name = _coerce("name", value, str)
        return
    section_name, _, field_name = key.partition(".")
    if section_name not in SECTIONS or not field_name:
        raise ConfigError(
            f"unknown config key {key!r}; keys are 'name' and section.field with sections "
            f"{', '.join(SECTIONS)} (e.g. loss.k1=1000)"
        )
    section = getattr(config, section_name)
    fields = _section_fields(section)
    if field_name not in fields:
        raise ConfigError(f"unknown config key {key!r}; valid keys in {section_name}: {', '.join(fields)}")
    spec = fields[field_name]
    hints = typing.get_type_hints(type(section))
    coerced = _coerce(key, value, hints[field_name])
    choices, check = spec.metadata.get("choices"), spec.metadata.get("check")
    if choices is not None and coerced not in choices:
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        raise ConfigError(f"{key} must be one of {allowed}; got {coerced!r}")
    if check is not None and coerced is not None and not check(coerced):
        raise ConfigError(f"{key}={coerced!r} is not allowed: {spec.metadata['help']}")
    setattr(section, field_name, coerced)


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


def preset_dirs() -> list[Path]:
    """Where preset names are looked up: the package's copy, then a repository checkout's configs/."""
    here = Path(__file__).resolve()
    return [here.parent.parent / "configs", here.parents[3] / "configs"]


def list_presets() -> list[str]:
    names = {p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def resolve_config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    for folder in preset_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"unknown config {name_or_path!r}: not a file, and not a preset ({', '.join(list_presets())})")


def parse_override(text: str) -> tuple[str, Any, str]:
    """``section.key=value`` -> (key, value read as YAML: ``1e-3``, ``true``, ``null``, ``[0.9, 0.99]``,
    ``"quoted text"``; the raw text)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. loss.k1=1000)")
    try:
        value = _yaml().safe_load(raw) if raw.strip() else ""
    except Exception:  # noqa: BLE001 - not YAML: take the text as it is
        value = raw.strip()
    return key.strip(), value, raw


def load_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a preset name or YAML file, then apply ``key=value`` overrides, validating everything."""
    path = resolve_config_path(name_or_path)
    data = _yaml().safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections; got {type(data).__name__}")
    config = Config(name=path.stem)
    for key, value in _flatten(data, str(path)).items():
        _set(config, key, value)
    for text in overrides:
        key, value, raw = parse_override(text)
        _set(config, key, value, raw)
    check_combination(config)
    return config


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`config_to_dict` output (a run's config.yaml), validating it."""
    config = Config()
    for key, value in _flatten(data, "config").items():
        _set(config, key, value)
    check_combination(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["optim"]["betas"] = list(config.optim.betas)
    return data


def dump_config(config: Config) -> str:
    return _yaml().safe_dump(config_to_dict(config), sort_keys=False)


def check_combination(config: Config) -> None:
    """Rules across fields."""
    if config.loss.method == "ce" and config.loss.queue_size:
        raise ConfigError("loss.queue_size must be 0 for method ce (no contrastive loss)")
    if config.loss.method != "ce" and config.data.n_views < 2 and config.loss.method in ("simclr", "tcl-ssl"):
        raise ConfigError(f"data.n_views must be >= 2 for self-supervised method {config.loss.method!r}")
    if config.data.fraction is not None and config.data.per_class is not None:
        raise ConfigError("data.fraction and data.per_class cannot both be set; choose one")
