"""The survey instrument: a questionnaire's items, answer scales, dimensions and index formulas, and the registry
of instruments by name.

An instrument is one JSON file (the schema of the built-in ``data/vsm2013/vsm2013.json``, the VSM 2013): items
numbered 1..n, each with a five-option answer scale, and an ``indices`` section whose keys are the instrument's
dimensions, in order. Answers are on a 1..5 scale (1 = the first option of the item's scale). An index is a
weighted sum of differences between item means plus a constant C: ``index = sum_w w * (mean(a) - mean(b)) + C``.
An optional ``targets`` section gives countries' target scores on the instrument's own dimensions (without it, the
targets are Hofstede's published scores, :mod:`culturealign.targets`).

>>> q = Questionnaire.load("vsm2013")                 # a registered name (None: the same built-in VSM 2013)
>>> q.dimensions, q.n_items
(('PDI', 'IDV', 'MAS', 'UAI', 'LTO', 'IVR'), 24)
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CultureAlignError

#: The built-in VSM 2013's dimensions and item count (another instrument has its own: Questionnaire.dimensions,
#: Questionnaire.n_items).
DIMENSIONS: tuple[str, ...] = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")
N_ITEMS = 24
#: Every instrument's answer scales have five options (the labels are A-E or 1-5).
N_OPTIONS = 5
#: Second MAS weight: 35 in the VSM 2013 manual, printed as 25 in the Hofstede's CAT paper (arXiv 2309.12342).
MAS_WEIGHT_MANUAL = 35
MAS_WEIGHT_CAT = 25

BUILTIN_INSTRUMENT = "vsm2013"
#: name -> the instrument's JSON file: a path, or a package resource (``importlib.resources.files("pkg") / "x.json"``).
#: The file is read only when the instrument is used.
INSTRUMENTS: dict[str, object] = {BUILTIN_INSTRUMENT: resources.files("culturealign") / "data/vsm2013/vsm2013.json"}
_SOURCES = {BUILTIN_INSTRUMENT: "builtin:vsm2013-en"}  # how a registered instrument is named in provenance
#: rewordings of the VSM 2013's 24 items written for this project, one per role (docs/method.md, "Wordings"): a second
#: training wording, the validation wording that picks the saved prompt, and a test wording nothing is tuned on
for _name in ("vsm2013-reworded", "vsm2013-validation", "vsm2013-test"):
    INSTRUMENTS[_name] = resources.files("culturealign") / f"data/vsm2013/{_name}.json"
#: a dimension name: usable in --dimensions A,B and as a history.csv column (best_<name>)
_DIMENSION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: names a dimension cannot have: history.csv's best_<name> columns that are not indices
_RESERVED = ("loss", "validation_loss", "generation")


def register_instrument(name: str, target: str | os.PathLike | object) -> None:
    """Register the instrument file ``target`` (a path, or a package resource such as
    ``importlib.resources.files("my_package") / "values.json"``) as ``name``: ``--questionnaire name`` and
    ``MeasureConfig(questionnaire=name)`` then find it. Nothing is read until it is used.

    >>> register_instrument("vsm2013-copy", INSTRUMENTS["vsm2013"])
    >>> Questionnaire.load("vsm2013-copy").source
    'instrument:vsm2013-copy'
    >>> del INSTRUMENTS["vsm2013-copy"]
    """
    if not isinstance(name, str) or not name.strip():
        raise CultureAlignError(f"an instrument name must be a non-empty string, not {name!r:.40}")
    if not isinstance(target, (str, os.PathLike)) and not hasattr(target, "read_text"):
        raise CultureAlignError(f"instrument '{name}': register a path or a package resource, not {target!r:.80}")
    INSTRUMENTS[name] = target


@dataclass(frozen=True)
class Item:
    id: int
    text: str
    intro: str
    options: tuple[str, ...]


@dataclass
class Questionnaire:
    """A validated instrument: the built-in VSM 2013, a translation or rewording of it, or another questionnaire.

    ``formulas[d]`` is a list of ``(weight, item_a, item_b)`` terms for dimension ``d``; its keys, in order, are
    :attr:`dimensions`. ``target_scores`` (``{country: {dimension: score}}``) is the file's own ``targets``
    section, None without one (the targets are then Hofstede's published scores).
    """

    items: list[Item]
    formulas: dict[str, list[tuple[float, int, int]]]
    names: dict[str, str]
    source: str
    language: str = "en"
    raw: dict = field(default_factory=dict, repr=False)
    descriptions: dict[str, str] = field(default_factory=dict, repr=False)
    target_scores: dict[str, dict[str, float]] | None = field(default=None, repr=False)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The instrument's dimensions, in the order of its ``indices`` section (the columns of every index array)."""
        return tuple(self.formulas)

    @property
    def n_items(self) -> int:
        """The number of items (numbered 1..n_items)."""
        return len(self.items)

    @classmethod
    def builtin(cls) -> "Questionnaire":
        return cls.load(None)

    @classmethod
    def from_file(cls, path: str | Path) -> "Questionnaire":
        from .io import read_json

        path = Path(path)
        if not path.is_file():
            raise CultureAlignError(f"questionnaire file {path} does not exist (nor is it a registered instrument: "
                                    f"{', '.join(sorted(INSTRUMENTS))})")
        return cls.from_dict(read_json(path, "questionnaire file"), source=str(path))

    @classmethod
    def load(cls, spec: str | Path | None) -> "Questionnaire":
        """``spec``: None (the built-in VSM 2013), a registered instrument's name (:func:`register_instrument`; a
        registered name wins over a file of that name) or a JSON file."""
        name = BUILTIN_INSTRUMENT if spec is None else spec
        if not isinstance(name, str) or name not in INSTRUMENTS:
            return cls.from_file(spec)
        target, source = INSTRUMENTS[name], _SOURCES.get(name, f"instrument:{name}")
        if isinstance(target, (str, os.PathLike)):
            return replace(cls.from_file(target), source=source)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CultureAlignError(f"instrument '{name}' ({target}) is unreadable or not valid JSON ({exc})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Questionnaire":
        """Validate ``data`` (the schema of the built-in ``vsm2013.json``) and build a questionnaire.

        Every defect (a missing or mistyped field, an item missing from 1..n, a bad formula term, a bad target) is
        named in one :class:`CultureAlignError`.
        """
        problems: list[str] = []
        if not isinstance(data, dict):
            raise CultureAlignError(f"questionnaire {source}: top level must be a JSON object")
        scales = _mapping(data, "scales", problems)
        blocks = _mapping(data, "blocks", problems)
        items_raw = data.get("items")
        if not isinstance(items_raw, list):
            raise CultureAlignError(f"questionnaire {source}: missing list 'items'")
        if "language" in data and not isinstance(data["language"], str):
            problems.append(f"'language' must be a string, not {_kind(data['language'])}")
        for name, options in list(scales.items()):
            if not isinstance(options, list) or len(options) != N_OPTIONS:
                n = len(options) if isinstance(options, list) else "no"
                problems.append(f"scale '{name}' has {n} options, needs {N_OPTIONS}")
                del scales[name]
            elif not all(isinstance(o, str) and o.strip() for o in options):
                problems.append(f"scale '{name}': every option must be non-empty text")
                del scales[name]
        for name, block in list(blocks.items()):
            if not isinstance(block, dict):
                problems.append(f"block '{name}' must be an object with 'intro' and 'scale', not {_kind(block)}")
                del blocks[name]
                continue
            for key in ("intro", "scale"):
                if block.get(key) is not None and not isinstance(block[key], str):
                    problems.append(f"block '{name}': '{key}' must be a string, not {_kind(block[key])}")
                    del blocks[name]
                    break
        items: dict[int, Item] = {}
        for raw in items_raw:
            if (not isinstance(raw, dict) or not _is_int(raw.get("id")) or not isinstance(raw.get("text"), str)
                    or not raw["text"].strip()):
                problems.append(f"item {raw!r:.60} needs an integer 'id' and a non-empty 'text'")
                continue
            iid = raw["id"]
            if iid in items:
                problems.append(f"item {iid} appears twice")
            bad = [k for k in ("block", "scale") if raw.get(k) is not None and not isinstance(raw[k], str)]
            if bad:
                problems.append(f"item {iid}: " + ", ".join(f"'{k}' must be a string, not {_kind(raw[k])}"
                                                            for k in bad))
                continue
            block = {}
            if raw.get("block") is not None:
                if raw["block"] not in blocks:
                    problems.append(f"item {iid} names unknown block '{raw['block']}'")
                else:
                    block = blocks[raw["block"]]
            scale_name = raw.get("scale") or block.get("scale")
            if scale_name not in scales:
                problems.append(f"item {iid} has no answer scale (scale '{scale_name}' is not defined)")
                continue
            items[iid] = Item(iid, raw["text"], block.get("intro") or "", tuple(scales[scale_name]))
        formulas, names, descriptions = _indices(_mapping(data, "indices", problems), problems)
        # items are numbered 1..n without gaps, n the highest item defined or used by an index
        used = {i for terms in formulas.values() for _, a, b in terms for i in (a, b)}
        n = max(set(items) | used, default=0)
        outside = sorted(i for i in items if i < 1)
        n_missing = n - (len(items) - len(outside))
        if not items and not outside:
            problems.append("it has no items")
        if outside:
            problems.append(f"items {outside} are outside 1..n (items are numbered from 1)")
        if n_missing:
            missing = sorted(set(range(1, n + 1)) - set(items)) if n_missing <= 100 else f"({n_missing} of them)"
            problems.append(f"items {missing} are missing (items are numbered 1..{n} without gaps, and every item an "
                            "index uses must be defined)")
        targets = _targets(data.get("targets"), tuple(formulas), problems)
        if problems:
            raise CultureAlignError(f"questionnaire {source} is malformed:\n  - " + "\n  - ".join(problems))
        return cls([items[i] for i in range(1, n + 1)], formulas, names, source, data.get("language", "en"), data,
                   descriptions, targets)

    def with_mas_weight(self, weight: float) -> "Questionnaire":
        """A copy whose second MAS term has ``weight`` (35 in the manual, 25 in the CAT paper). An instrument
        without a two-term MAS index is returned as it is for the manual's weight (nothing to change), and any
        other weight is an error there."""
        mas = self.formulas.get("MAS")
        if mas is None or len(mas) < 2:
            if weight == MAS_WEIGHT_MANUAL:
                return self
            raise CultureAlignError(
                f"--cat-mas-weight changes the second term of the VSM 2013's MAS index, and questionnaire "
                f"{self.source} " + ("has no index MAS" if mas is None else
                                     "has one MAS term: index MAS needs two terms (the second's weight is what "
                                     "--cat-mas-weight changes)"))
        formulas = {d: list(t) for d, t in self.formulas.items()}
        w, a, b = formulas["MAS"][1]
        formulas["MAS"][1] = (float(weight), a, b)
        return replace(self, formulas=formulas)

    def weight_matrix(self) -> np.ndarray:
        """W of shape (n_dimensions, n_items) such that raw indices = W @ item_means (constants excluded)."""
        w = np.zeros((len(self.dimensions), self.n_items))
        for d, dim in enumerate(self.dimensions):
            for weight, a, b in self.formulas[dim]:
                w[d, a - 1] += weight
                w[d, b - 1] -= weight
        return w

    def check_same_instrument(self, other: "Questionnaire") -> None:
        """A clear error unless ``other`` is a wording of this instrument: the same dimensions, item count and index
        formulas (the texts may differ). Wordings trained on together or scored against one another must be.

        >>> Questionnaire.load("vsm2013").check_same_instrument(Questionnaire.load("vsm2013-test"))
        """
        if (self.dimensions, self.n_items) != (other.dimensions, other.n_items):
            raise CultureAlignError(
                f"questionnaire {other.source} is not a wording of {self.source}: it has {other.n_items} items and "
                f"the dimensions {', '.join(other.dimensions)}, not {self.n_items} items and "
                f"{', '.join(self.dimensions)}; give wordings of one instrument")
        if not np.allclose(self.weight_matrix(), other.weight_matrix()):
            differ = [d for d, a, b in zip(self.dimensions, self.weight_matrix(), other.weight_matrix())
                      if not np.allclose(a, b)]
            raise CultureAlignError(f"questionnaire {other.source} is not a wording of {self.source}: the formulas of "
                                    f"{', '.join(differ)} differ; give wordings of one instrument")

    def raw_indices(self, means: np.ndarray) -> np.ndarray:
        """Raw indices (constants 0) from item means; ``means`` (..., n_items) -> (..., n_dimensions)."""
        means = np.asarray(means, dtype=float)
        if means.shape[-1] != self.n_items:
            raise CultureAlignError(f"need {self.n_items} item means, got {means.shape[-1]}")
        return means @ self.weight_matrix().T

    def indices(self, means: np.ndarray, constants: Sequence[float] | np.ndarray) -> np.ndarray:
        """Indices with constants C added; ``means`` (..., n_items), ``constants`` (n_dimensions,) ->
        (..., n_dimensions).

        The columns are :attr:`dimensions` (for the VSM 2013: PDI, IDV, MAS, UAI, LTO, IVR); each index is a
        weighted sum of item mean differences, plus its constant.

        >>> import numpy as np
        >>> q = Questionnaire.builtin()
        >>> means = np.full((2, 24), 3.0)                  # (P, 24) item means on the 1-5 scale
        >>> q.indices(means, np.zeros(6)).shape             # (P, 6)
        (2, 6)
        >>> means[0, 6] = 2.0                               # item 7 enters PDI with weight 35: 35 * (2 - 3)
        >>> q.indices(means, [10, 0, 0, 0, 0, 0])[:, 0].tolist()
        [-25.0, 10.0]
        """
        constants = np.asarray(constants, dtype=float)
        if constants.shape != (len(self.dimensions),):
            raise CultureAlignError(f"need {len(self.dimensions)} constants ({', '.join(self.dimensions)}), "
                                    f"got shape {constants.shape}")
        return self.raw_indices(means) + constants


def _indices(indices: dict, problems: list[str]) -> tuple[dict, dict, dict]:
    """The ``indices`` section as (formulas, names, descriptions), every defect appended to ``problems``."""
    formulas: dict[str, list[tuple[float, int, int]]] = {}
    names: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    if not indices:
        problems.append("'indices' is missing or empty (an object: dimension -> {'name', 'terms'})")
    seen: dict[str, str] = {}
    for dim, spec in indices.items():
        if not _DIMENSION_NAME.fullmatch(dim) or dim.lower() in _RESERVED:
            problems.append(f"index name {dim!r:.40} must be a letter followed by letters, digits or _ "
                            f"(and not {', '.join(map(repr, _RESERVED))}: columns of history.csv)")
            continue
        if dim.lower() in seen:
            problems.append(f"indices {seen[dim.lower()]} and {dim} differ only in case")
            continue
        seen[dim.lower()] = dim
        if not isinstance(spec, dict):
            problems.append(f"index {dim} must be an object with 'name' and 'terms', not {_kind(spec)}")
            continue
        if not spec.get("terms"):
            problems.append(f"index formula for {dim} is missing (no 'terms')")
            continue
        if not isinstance(spec["terms"], list):
            problems.append(f"index {dim}: 'terms' must be a list of [weight, item_a, item_b], "
                            f"not {_kind(spec['terms'])}")
            continue
        for key in ("name", "description"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                problems.append(f"index {dim}: '{key}' must be a string, not {_kind(spec[key])}")
        terms = []
        for term in spec["terms"]:
            if (not isinstance(term, list) or len(term) != 3 or not _is_finite_number(term[0])
                    or not all(_is_int(t) and t >= 1 for t in term[1:])):
                problems.append(f"index {dim}: term {term!r:.60} must be [weight, item_a, item_b] with a finite "
                                "numeric weight and item numbers from 1")
                continue
            terms.append((float(term[0]), int(term[1]), int(term[2])))
        formulas[dim] = terms
        names[dim] = spec.get("name") if isinstance(spec.get("name"), str) else dim
        if isinstance(spec.get("description"), str):
            descriptions[dim] = spec["description"]
    return formulas, names, descriptions


def _targets(targets, dimensions: tuple[str, ...], problems: list[str]) -> dict[str, dict[str, float]] | None:
    """The optional ``targets`` section, ``{country: {dimension: score}}``, checked against ``dimensions``."""
    if targets is None:
        return None
    if not isinstance(targets, dict) or not targets:
        problems.append(f"'targets' must be an object of countries, each {{dimension: score}}, not {_kind(targets)}"
                        + (" (empty)" if targets == {} else ""))
        return None
    out = {}
    for country, scores in targets.items():
        if not country.strip() or not isinstance(scores, dict) or not scores:
            problems.append(f"target {country!r:.40} must be a non-empty object of {{dimension: score}}")
            continue
        unknown = [str(d) for d in scores if d not in dimensions]
        bad = [str(d) for d, v in scores.items() if d in dimensions and not _is_finite_number(v)]
        if unknown:
            problems.append(f"target {country}: {', '.join(unknown)[:80]} not among the indices "
                            f"({', '.join(dimensions)})")
        if bad:
            problems.append(f"target {country}: the scores of {', '.join(bad)} must be finite numbers")
        if not unknown and not bad:
            out[country] = {d: float(scores[d]) for d in dimensions if d in scores}
    return out


def read_means(path: str | Path, n_items: int = N_ITEMS) -> np.ndarray:
    """Item means 1..n_items (default the VSM 2013's 24) from a JSON file (a list, or an object keyed by item id /
    "m01") or a CSV file.

    CSV: either two columns ``item,mean`` (a header is optional) or one row of n_items numbers. Every mean must be
    a finite number in 1..5 and every item given once; anything else is a :class:`CultureAlignError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CultureAlignError(f"means file {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            from .io import read_json

            pairs = _means_from_json(read_json(path, "means file"), n_items)
        else:
            pairs = _means_from_csv(path.read_text(encoding="utf-8"), n_items)
    except (OSError, UnicodeDecodeError) as exc:
        raise CultureAlignError(f"means file {path} is unreadable ({exc})") from None
    except ValueError as exc:
        raise CultureAlignError(f"could not read item means from {path}: {exc}") from None
    values: dict[int, float] = {}
    for item, value in pairs:
        if item in values:
            raise CultureAlignError(f"could not read item means from {path}: item {item} is given twice")
        values[item] = value
    missing = sorted(set(range(1, n_items + 1)) - set(values))
    if missing or len(values) != n_items:
        extra = sorted(set(values) - set(range(1, n_items + 1)))
        raise CultureAlignError(
            f"{path} has {len(values)} item means; need exactly {n_items} (items 1..{n_items}), missing {missing}"
            + (f", unknown items {extra}" if extra else ""))
    means = np.array([values[i] for i in range(1, n_items + 1)])
    bad = [i + 1 for i, m in enumerate(means) if not np.isfinite(m)]
    if bad:
        raise CultureAlignError(f"{path}: the means of items {bad} are not finite numbers (NaN or infinite)")
    if np.any(means < 1) or np.any(means > 5):
        raise CultureAlignError(f"{path}: item means must lie in 1..5 (the answer scale)")
    return means


def _means_from_json(data, n_items: int) -> list[tuple[int, float]]:
    if isinstance(data, dict) and "means" in data:
        data = data["means"]
    if isinstance(data, list):
        return [(i + 1, _json_mean(v, f"entry {i + 1}")) for i, v in enumerate(data)]
    if isinstance(data, dict):
        return [(_item_number(k), _json_mean(v, f"item {k}")) for k, v in data.items()]
    raise ValueError(f"expected a list of {n_items} numbers or an object keyed by item, not {_kind(data)}")


def _json_mean(value, where: str) -> float:
    if not _is_finite_number(value):
        raise ValueError(f"{where} must be a finite number, not {value!r:.40}")
    return float(value)


def _means_from_csv(text: str, n_items: int) -> list[tuple[int, float]]:
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    if rows and not _is_number(rows[0][-1]):
        rows = rows[1:]  # a header
    if len(rows) == 1 and len(rows[0]) > 2:
        return [(i + 1, _csv_number(v, f"column {i + 1}")) for i, v in enumerate(rows[0])]
    out = []
    for n, row in enumerate(rows, 1):
        if len(row) != 2:
            raise ValueError(f"row {n} has {len(row)} columns; need two (item,mean) or one row of {n_items} numbers")
        out.append((_item_number(row[0]), _csv_number(row[1], f"row {n}")))
    return out


def _csv_number(text: str, where: str) -> float:
    if not _is_number(text):
        raise ValueError(f"{where}: {text!r:.40} is not a number")
    return float(text)


_ITEM_KEY = re.compile(r"m?0*(\d{1,3})")


def _item_number(key) -> int:
    """``1``, ``"1"``, ``"m01"`` or ``"M1"`` -> 1."""
    match = _ITEM_KEY.fullmatch(str(key).strip().lower())
    if match is None:
        raise ValueError(f"{str(key)!r:.40} is not an item number (1, 2, ... or m01, m02, ...)")
    return int(match.group(1))


def _is_number(s: str) -> bool:
    return _NUMBER.fullmatch(s.strip()) is not None


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _mapping(data: dict, key: str, problems: list[str]) -> dict:
    """``data[key]`` as a (copied) dict; anything else is a problem (missing or null: empty)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"'{key}' must be an object keyed by name, not {_kind(value)}")
        return {}
    return dict(value)
