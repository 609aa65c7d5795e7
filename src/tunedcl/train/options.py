"""Config values that belong to a registered entry: the method's hyperparameters (the ``loss`` section), the
encoder's options (``model.options``) and the dataset source's options (``data.options``); :func:`finalize`
checks a whole config's registered names and options.

Each entry's constructor signature is the one source of its options, their types and their defaults:
a value is typed from the parameter's annotation, checked by name against the chosen entry, and the
missing ones take the entry's default. A key the chosen entry does not take is refused, unless another
registered entry takes it and the value is that entry's default: a sweep's base config can then set
``loss.k1: 5000`` and compare ``loss.method=tcl,supcon`` (SupCon has no k1) without a silent change, as any
other k1 for SupCon is an error.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from tunedcl.registry import Registry, named_parameters

Specs = dict[str, inspect.Parameter]

_BASIC_TYPES = {"float": float, "int": int, "bool": bool, "str": str, "None": type(None)}


class ConfigError(ValueError):
    """A config value or key that is not allowed (the message says what is)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the type ``tp`` (int, float, str, bool, X | None, tuple[float, float]);
    ``typing.Any`` accepts anything."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {' or '.join(_type_name(o) for o in options)}; got {value!r}")
    if origin is list:  # list[int], list[list[int]]
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list; got {value!r}")
        return [coerce(key, v, item) for v in value]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise ConfigError(f"{key} must be a list of {len(items)} numbers; got {value!r}")
        return tuple(coerce(key, v, t) for v, t in zip(value, items, strict=True))
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


def annotation_type(parameter: inspect.Parameter) -> Any:
    """The config type of a constructor parameter: the union of the basic types its annotation names
    (``"int | None"``, ``"torch.dtype | str | None"`` -> ``str | None``); ``Any`` when it names none."""
    annotation = parameter.annotation
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    found = [_BASIC_TYPES[t.strip()] for t in annotation.split("|") if t.strip() in _BASIC_TYPES]
    if not found:
        return Any
    union: Any = found[0]
    for tp in found[1:]:
        union = union | tp
    return union


def options_of(builder: Any) -> Specs:
    """The keyword options a registered builder takes (its keyword-only parameters, or every named one
    but ``in_channels`` / ``root`` / ``download`` when it has none)."""
    keyword_only = named_parameters(builder, keyword_only=True)
    return keyword_only or named_parameters(builder, skip=("in_channels", "root", "download"))


def resolve(
    where: str,
    given: dict[str, Any],
    specs: Specs,
    owner: str,
    everyone: Iterable[tuple[str, Specs]],
    fill_defaults: bool,
    valid_keys: str,
    lenient: bool = False,
) -> dict[str, Any]:
    """The options ``given`` for ``owner`` (whose parameters are ``specs``), typed; defaults filled in when
    ``fill_defaults``, else those equal to their default left out.

    ``where`` is the config prefix (``loss``, ``model.options``) for messages; ``everyone`` lists every
    registered entry's specs, for keys that belong to another entry; ``valid_keys`` ends the message about a
    key that belongs to none. ``lenient``: a key another entry takes is dropped whatever its value (a saved
    config.yaml of an earlier tunedcl holds every method's fields)."""
    resolved: dict[str, Any] = {}
    for key, value in given.items():
        if key in specs:
            resolved[key] = coerce(f"{where}.{key}", value, annotation_type(specs[key]))
        elif value is not None or not lenient:
            _drop_if_inert(where, key, value, owner, everyone, valid_keys, lenient)
    if fill_defaults:
        for key, parameter in specs.items():
            if key not in resolved and parameter.default is not inspect.Parameter.empty:
                resolved[key] = parameter.default
    else:  # only what differs from the defaults: the same run is then the same config, however it was spelt
        resolved = {key: value for key, value in resolved.items() if value != specs[key].default}
    return {key: resolved[key] for key in [*specs, *resolved] if key in resolved}  # in signature order


def _drop_if_inert(where: str, key: str, value: Any, owner: str, everyone: Iterable[tuple[str, Specs]],
                   valid_keys: str, lenient: bool = False) -> None:
    takers = [(name, entry[key]) for name, entry in everyone if key in entry]
    if not takers:
        raise ConfigError(f"unknown config key '{where}.{key}'; {valid_keys}")
    if lenient:
        return
    defaults = [p.default for _, p in takers if p.default is not inspect.Parameter.empty]
    for default in defaults:
        try:
            if coerce(key, value, annotation_type(takers[0][1])) == default:
                return  # another entry's default: nothing is lost by leaving it out
        except ConfigError:
            break
    # The message names the default most entries share (any entry's default is accepted).
    shown = repr(max(defaults, key=lambda d: sum(repr(e) == repr(d) for e in defaults))) if defaults else "left out"
    raise ConfigError(
        f"{where}.{key} must be {shown} for {owner}, which does not use it (it belongs to "
        f"{', '.join(name for name, _ in takers)}); leave it out"
    )


# --- a whole config's registered names and options -----------------------------------------------------------


def finalize(config: Any, saved: bool = False) -> None:
    """Check the registered names and options (method, encoder, dataset, augmentations), type them, fill in
    the method's defaults, and apply the rules across fields. ``saved``: a run's own config.yaml (see
    :func:`config_from_dict`)."""
    from tunedcl.data import DATASETS
    from tunedcl.data.augment import AUGMENTATIONS
    from tunedcl.methods import METHODS
    from tunedcl.models import MODELS

    loss, model, data = config.loss, config.model, config.data
    loss.method = _registered("loss.method", METHODS, loss.method)
    model.encoder = _registered("model.encoder", MODELS, model.encoder)
    data.dataset = _registered("data.dataset", DATASETS, data.dataset)
    data.augment = _registered("data.augment", AUGMENTATIONS, data.augment)
    if data.last_view_augment is not None:
        data.last_view_augment = _registered("data.last_view_augment", AUGMENTATIONS, data.last_view_augment)
    methods = [(f"method {name}", METHODS.get(name).hyperparameter_specs()) for name in METHODS]
    specs = METHODS.get(loss.method).hyperparameter_specs()
    loss.hyperparameters = resolve(
        "loss", loss.hyperparameters, specs, f"method {loss.method}", methods, fill_defaults=True,
        valid_keys=f"valid keys in loss: {', '.join(['method', *specs])}", lenient=saved,
    )
    _check_hyperparameters(config)
    model.options = _resolve_options("model.options", model.options, MODELS, model.encoder, "model", saved)
    data.options = _resolve_options("data.options", data.options, DATASETS, data.dataset, "dataset", saved)
    _check_model_options(config)
    from tunedcl.train.config import check_combination

    check_combination(config)


def _registered(key: str, registry: Registry, value: Any) -> str:
    try:
        return registry.key(value)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def _resolve_options(
    where: str, given: dict[str, Any], registry: Registry, name: str, kind: str, saved: bool
) -> dict[str, Any]:
    everyone = [(f"{kind} {entry}", options_of(registry.get(entry))) for entry in registry]
    specs = options_of(registry.get(name))
    return resolve(where, given, specs, f"{kind} {name}", everyone, fill_defaults=False,
                   valid_keys=f"options of {kind} {name}: {', '.join(specs) or 'none'}", lenient=saved)


def _check_model_options(config: Any) -> None:
    """The encoder's options through its own checks now, not at the first training step: built on the
    ``meta`` device, which allocates nothing."""
    import torch

    from tunedcl.models import create_model

    try:
        with torch.device("meta"):
            create_model(config.model.encoder, in_channels=3, **config.model.options)
    except ValueError as error:
        raise ConfigError(f"model.options: {error}") from None


def _check_hyperparameters(config: Any) -> None:
    """Each hyperparameter's value through the method's own checks, naming the key that fails."""
    from tunedcl.methods import create_method

    for key, value in config.loss.hyperparameters.items():
        try:
            create_method(config.loss.method, **{key: value})
        except ValueError as error:
            raise ConfigError(f"loss.{key}={value!r} is not allowed: {error}") from None
