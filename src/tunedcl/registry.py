"""One registry class for everything looked up by name: losses, methods, models, datasets, augmentations,
config presets.

    >>> from tunedcl.registry import Registry
    >>> shapes = Registry("shape")
    >>> @shapes.register("square", aliases=("box",))
    ... def square(side: float = 1.0) -> float:
    ...     '''A square of the given side.'''
    ...     return side * side
    >>> shapes.get("Box")(2.0)
    4.0
    >>> shapes.get("sqare")
    Traceback (most recent call last):
    ...
    ValueError: unknown shape 'sqare'; did you mean 'square'? known shapes: square

Names are case-insensitive and ``_`` equals ``-`` (``ResNet18``, ``small_cnn`` are what people type in YAML).
An entry's one-line description is its docstring's first line unless given.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def normalise_name(name: str) -> str:
    """The registry key of ``name``: stripped, lower case, ``_`` as ``-``."""
    return name.strip().lower().replace("_", "-")


def first_line(text: str | None) -> str:
    """The one-line description in a docstring: its first paragraph, on one line, up to its first full stop."""
    paragraph = []
    for line in (text or "").strip().splitlines():
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    summary = " ".join(paragraph)
    end = summary.find(". ")
    return summary[: end + 1] if end >= 0 else summary


def named_parameters(
    fn: Callable, skip: tuple[str, ...] = ("self",), keyword_only: bool = False
) -> dict[str, inspect.Parameter]:
    """The named parameters of ``fn`` in order (``*args`` / ``**kwargs`` and ``skip`` left out; with
    ``keyword_only``, only those after ``*``): what a registered entry's options, hyperparameters or
    arguments are, read from its one signature."""
    return {
        name: parameter
        for name, parameter in inspect.signature(fn).parameters.items()
        if name not in skip
        and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
        and (not keyword_only or parameter.kind is parameter.KEYWORD_ONLY)
    }


class Registry(Generic[T]):
    """Entries by name: register with :meth:`register` (a decorator) or :meth:`add`, look up with
    :meth:`get` (a did-you-mean ``ValueError`` for unknown names), list with :meth:`names` and
    :meth:`describe`.

    Args:
        kind: what the entries are, for messages (``"loss"``, ``"model"``).
        plural: the plural of ``kind`` (default ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, *, aliases: tuple[str, ...] = (), description: str | None = None) -> T:
        """Add ``entry`` under ``name`` (and ``aliases``); a name already taken is a ValueError."""
        key = normalise_name(name)
        for taken in (key, *map(normalise_name, aliases)):
            if taken in self._entries or taken in self._aliases:
                raise ValueError(f"a {self.kind} named {taken!r} is already registered")
        self._entries[key] = entry
        self._descriptions[key] = description if description is not None else first_line(getattr(entry, "__doc__", ""))
        for alias in aliases:
            self._aliases[normalise_name(alias)] = key
        return entry

    def register(
        self, name: str, *, aliases: tuple[str, ...] = (), description: str | None = None
    ) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("name")``."""

        def decorator(entry: T) -> T:
            return self.add(name, entry, aliases=aliases, description=description)

        return decorator

    def remove(self, name: str) -> T:
        """Take an entry (and its aliases) out again, e.g. one a test registered; returns it."""
        key = self.key(name)
        for alias in self.aliases_of(key):
            del self._aliases[alias]
        del self._descriptions[key]
        return self._entries.pop(key)

    def key(self, name: object) -> str:
        """The canonical name of ``name`` (an alias resolves to its target), or a did-you-mean ValueError."""
        if isinstance(name, str):
            key = normalise_name(name)
            key = self._aliases.get(key, key)
            if key in self._entries:
                return key
        raise ValueError(self._unknown(name))

    def get(self, name: object) -> T:
        """The entry registered as ``name`` (or an alias of it)."""
        return self._entries[self.key(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (aliases excluded)."""
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, one-line description)`` of every entry, sorted by name."""
        return [(name, self._descriptions[name]) for name in self.names()]

    def aliases_of(self, name: str) -> list[str]:
        key = self.key(name)
        return sorted(alias for alias, target in self._aliases.items() if target == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalise_name(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown(self, name: object) -> str:
        known = self.names()
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(normalise_name(name), known + sorted(self._aliases), n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {self._aliases.get(close[0], close[0])!r}?"
        return f"unknown {self.kind} {name!r}{hint or ';'} known {self.plural}: {', '.join(known)}"
