"""Reading a run folder written by ``culturealign align``: its ``run.json``, validated, and its configuration.

Every reader of a run folder (``compare``, ``evaluate robustness``) goes through :func:`load_run`, so a missing,
corrupt or outdated ``run.json`` is one :class:`CultureAlignError` that says what is wrong, never a traceback.
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

from .config import AlignConfig, MeasureConfig, SoftPromptConfig
from .errors import ConfigError, CultureAlignError
from .instrument import Questionnaire
from .io import read_json

RUN_FILE = "run.json"
_JSON_KEYS = {"AlignConfig": "config", "SoftPromptConfig": "config.soft", "MeasureConfig": "config.measure"}


def load_run(folder: str | Path) -> tuple[dict, AlignConfig]:
    """The run record of ``folder`` and the :class:`AlignConfig` it was run with.

    Checked: the record is a JSON object; ``config`` (with ``soft`` and ``measure``) has exactly the fields this
    version knows, each of the right type and value; the run's questionnaire loads; ``constants`` has a ``kind``
    and a finite number per dimension of that questionnaire (``values``); ``status`` is a string and ``best`` (if
    present) holds a numeric ``loss`` and the indices of those dimensions.
    Anything else raises ``CultureAlignError("<folder> is not a run folder written by `culturealign align` ...:
    <what is wrong>")``.
    """
    folder = Path(folder)
    what = f"{folder} is not a run folder written by `culturealign align`"
    if not folder.is_dir():
        raise CultureAlignError(f"{what} (no such folder)")
    path = folder / RUN_FILE
    if not path.is_file():
        raise CultureAlignError(f"{what} (no {RUN_FILE})")
    record = read_json(path, "run record", hint="re-run `culturealign align` or restore the file")

    def bad(problem: str) -> CultureAlignError:
        return CultureAlignError(f"{folder} is not a run folder written by this version of `culturealign align` "
                                 f"({path}: {problem})")

    if not isinstance(record, dict):
        raise bad("the top level must be a JSON object")
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        raise bad("no 'config' object")
    for key, cls, known in (("config", AlignConfig, cfg), ("config.soft", SoftPromptConfig, cfg.get("soft")),
                            ("config.measure", MeasureConfig, cfg.get("measure"))):
        if not isinstance(known, dict):
            raise bad(f"no '{key}' object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in known if k not in names)
        if unknown:
            raise bad(f"{key} has unknown field(s) {', '.join(unknown)[:120]}")
        required = sorted(f.name for f in fields(cls) if f.name not in known and _required(f))
        if required:
            raise bad(f"{key} lacks {', '.join(required)}")
    try:
        config = AlignConfig.from_dict(cfg)
        dimensions = Questionnaire.load(config.measure.questionnaire).dimensions  # the run's questionnaire's
    except ConfigError as exc:  # named as the file's keys: MeasureConfig.batch_size -> config.measure.batch_size
        raise bad(exc.naming({f: _json_key(f) for f in exc.fields})) from None
    except CultureAlignError as exc:
        raise bad(str(exc)) from None
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise bad(f"config: {exc}") from None
    _check_constants(record.get("constants"), dimensions, bad)
    if "status" in record and not isinstance(record["status"], str):
        raise bad("'status' must be a string")
    if "best" in record:
        _check_best(record["best"], dimensions, bad)
    return record, config


def _json_key(field: str) -> str:
    config, _, name = field.partition(".")
    return f"{_JSON_KEYS[config]}.{name}" if config in _JSON_KEYS else field


def _required(f) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    try:
        return _number(value) and math.isfinite(value)
    except OverflowError:
        return False


def _check_constants(constants, dimensions: tuple[str, ...], bad) -> None:
    if not isinstance(constants, dict):
        raise bad("no 'constants' object")
    if not isinstance(constants.get("kind"), str):
        raise bad("constants.kind must be a string")
    values = constants.get("values")
    if not isinstance(values, dict) or not all(_finite(values.get(d)) for d in dimensions):
        raise bad(f"constants.values must hold a finite number for each of {', '.join(dimensions)}")


def _check_best(best, dimensions: tuple[str, ...], bad) -> None:
    if not isinstance(best, dict) or not _number(best.get("loss")):
        raise bad("'best' must be an object with a numeric 'loss'")
    indices = best.get("indices")
    if indices is None:
        return
    if not isinstance(indices, dict) or not all(
            d in indices and isinstance(indices[d], dict) and _number(indices[d].get("model")) for d in dimensions):
        raise bad(f"best.indices must hold {{'model': number, ...}} for each of {', '.join(dimensions)}")
