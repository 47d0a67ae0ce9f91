"""A registry of named classes, imported lazily: what the backends (:mod:`culturealign.backends`) and the evaluations
(:mod:`culturealign.evaluations`) are found by.

As lm-evaluation-harness registers its models, an entry is a ``"module:Class"`` string, and the module (with what it
imports: torch, an engine, a dataset) is imported only when that name is used; an entry can also be the class
itself. This module imports nothing heavy, so a name can be checked cheaply.

>>> shapes = Registry("shape", "my_package.register_shape", {"ordered": "collections:OrderedDict"})
>>> shapes.load("ordered").__name__
'OrderedDict'
>>> shapes.load("square")
Traceback (most recent call last):
culturealign.errors.CultureAlignError: unknown shape 'square': use one of ordered (or register one with my_package.register_shape)
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import CultureAlignError


class Registry(dict):
    """name -> ``"module:Class"`` (not imported yet) or the class itself (registered directly, or imported once).

    kind: what it holds ("backend"), for the messages. register_with: the function users register with, named in
    the error for an unknown name. install_hints: per name, how to install what its module imports, named in the
    error when that import fails.
    """

    def __init__(self, kind: str, register_with: str, entries: dict[str, Any] | None = None,
                 install_hints: dict[str, str] | None = None):
        super().__init__(entries or {})
        self.kind, self.register_with, self.install_hints = kind, register_with, install_hints or {}

    def register(self, name: str, target: str | type | None = None) -> Any:
        """Register ``target`` (``"module:Class"`` or the class) under ``name``; without ``target`` a class decorator."""
        if not isinstance(name, str) or not name.strip():
            raise CultureAlignError(f"a {self.kind} name must be a non-empty string, not {name!r:.40}")
        if target is None:
            def decorate(cls: type) -> type:
                self[name] = cls
                return cls
            return decorate
        if isinstance(target, str) and ":" not in target:
            raise CultureAlignError(f"{self.kind} '{name}': register 'module:Class', not {target!r:.80}")
        self[name] = target
        return target

    def check(self, name) -> None:
        """A clear error unless ``name`` is registered (nothing is imported)."""
        if not isinstance(name, str) or name not in self:
            raise CultureAlignError(f"unknown {self.kind} {name!r:.40}: use one of {', '.join(sorted(self))} "
                                    f"(or register one with {self.register_with})")

    def load(self, name: str) -> type:
        """The class registered as ``name``, importing its module now (and only now)."""
        self.check(name)
        target = self[name]
        if not isinstance(target, str):
            return target
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # the module, or what it imports, is not installed
            hint = self.install_hints.get(name, f"install the package that provides {module_name}")
            raise CultureAlignError(f"{self.kind} '{name}' is not available here ({exc}): {hint}") from None
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise CultureAlignError(f"{self.kind} '{name}': {module_name} has no class {class_name}")
        self[name] = cls
        return cls

