"""One exception type for every user-facing error: the CLI prints its message and exits non-zero.

A configuration value that is not allowed is a :class:`ConfigError`, which names the field(s) it is about, so
that whoever set them can say it in its own words: the CLI names its flags, a run-folder reader the JSON keys.

>>> exc = ConfigError("AlignConfig.steps must be at least 1, not 0", "AlignConfig.steps")
>>> str(exc), exc.fields
('AlignConfig.steps must be at least 1, not 0', ('AlignConfig.steps',))
>>> exc.naming({"AlignConfig.steps": "--steps"})
'--steps must be at least 1, not 0'
"""
from __future__ import annotations

from typing import Mapping


class CultureAlignError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""


class ConfigError(CultureAlignError):
    """A configuration value that is not allowed. ``fields``: the ``"<Config>.<field>"`` names the message is about
    (it names them so); :meth:`naming` gives the message with other names for them."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.message, self.fields = message, tuple(fields)

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with each of its fields named as ``names`` says (a field not in it keeps its name)."""
        message = self.message
        for name in self.fields:
            message = message.replace(name, names.get(name, name))
        return message

    def __reduce__(self):  # keeps the fields across processes (a Ray worker's error reaches the driver whole)
        return type(self), (self.message, *self.fields)
