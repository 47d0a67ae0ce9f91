"""The survey instrument: the VSM 2013 questionnaire, its validation and the six index formulas.

Answers are on a 1..5 scale (1 = the first option of the item's scale). An index is a weighted sum of
differences between item means plus a constant C: ``index = sum_w w * (mean(a) - mean(b)) + C``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import CultureAlignError

DIMENSIONS: tuple[str, ...] = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")
N_ITEMS = 24
N_OPTIONS = 5
#: Second MAS weight: 35 in the VSM 2013 manual, printed as 25 in the Hofstede's CAT paper (arXiv 2309.12342).
MAS_WEIGHT_MANUAL = 35
MAS_WEIGHT_CAT = 25


@dataclass(frozen=True)
class Item:
    id: int
    text: str
    intro: str
    options: tuple[str, ...]


@dataclass
class Questionnaire:
    """A validated VSM 2013 questionnaire (the built-in English one, a translation or a rewording).

    ``formulas[d]`` is a list of ``(weight, item_a, item_b)`` terms for dimension ``d``.
    """

    items: list[Item]
    formulas: dict[str, list[tuple[float, int, int]]]
    names: dict[str, str]
    source: str
    language: str = "en"
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def builtin(cls) -> "Questionnaire":
        text = resources.files("culturealign").joinpath("data/vsm2013/vsm2013.json").read_text()
        return cls.from_dict(json.loads(text), source="builtin:vsm2013-en")

    @classmethod
    def from_file(cls, path: str | Path) -> "Questionnaire":
        from .io import read_json

        path = Path(path)
        if not path.is_file():
            raise CultureAlignError(f"questionnaire file {path} does not exist")
        return cls.from_dict(read_json(path, "questionnaire file"), source=str(path))

    @classmethod
    def load(cls, path: str | Path | None) -> "Questionnaire":
        return cls.builtin() if path is None else cls.from_file(path)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Questionnaire":
        """Validate ``data`` (the schema of the built-in ``vsm2013.json``) and build a questionnaire.

        Every defect (a missing or mistyped field, a bad formula term) is named in one :class:`CultureAlignError`.
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
        missing = sorted(set(range(1, N_ITEMS + 1)) - set(items))
        extra = sorted(set(items) - set(range(1, N_ITEMS + 1)))
        if missing:
            problems.append(f"items {missing} are missing (a VSM 2013 questionnaire has items 1..{N_ITEMS})")
        if extra:
            problems.append(f"items {extra} are outside 1..{N_ITEMS}")
        formulas: dict[str, list[tuple[float, int, int]]] = {}
        names: dict[str, str] = {}
        indices = _mapping(data, "indices", problems)
        for dim in DIMENSIONS:
            spec = indices.get(dim)
            if spec is not None and not isinstance(spec, dict):
                problems.append(f"index {dim} must be an object with 'name' and 'terms', not {_kind(spec)}")
                continue
            if not spec or not spec.get("terms"):
                problems.append(f"index formula for {dim} is missing")
                continue
            if not isinstance(spec["terms"], list):
                problems.append(f"index {dim}: 'terms' must be a list of [weight, item_a, item_b], "
                                f"not {_kind(spec['terms'])}")
                continue
            if spec.get("name") is not None and not isinstance(spec["name"], str):
                problems.append(f"index {dim}: 'name' must be a string, not {_kind(spec['name'])}")
            terms = []
            for term in spec["terms"]:
                if (not isinstance(term, list) or len(term) != 3 or not _is_finite_number(term[0])
                        or not all(_is_int(t) and 1 <= t <= N_ITEMS for t in term[1:])):
                    problems.append(f"index {dim}: term {term!r:.60} must be [weight, item_a, item_b] with a finite "
                                    f"numeric weight and items in 1..{N_ITEMS}")
                    continue
                terms.append((float(term[0]), int(term[1]), int(term[2])))
            if dim == "MAS" and len(spec["terms"]) < 2:
                problems.append("index MAS needs two terms (the second's weight is what --cat-mas-weight changes)")
            formulas[dim] = terms
            names[dim] = spec.get("name") if isinstance(spec.get("name"), str) else dim
        if problems:
            raise CultureAlignError(f"questionnaire {source} is malformed:\n  - " + "\n  - ".join(problems))
        return cls([items[i] for i in range(1, N_ITEMS + 1)], formulas, names, source,
                   data.get("language", "en"), data)

    def with_mas_weight(self, weight: float) -> "Questionnaire":
        """A copy whose second MAS term has ``weight`` (35 in the manual, 25 in the CAT paper)."""
        formulas = {d: list(t) for d, t in self.formulas.items()}
        w, a, b = formulas["MAS"][1]
        formulas["MAS"][1] = (float(weight), a, b)
        return Questionnaire(self.items, formulas, self.names, self.source, self.language, self.raw)

    def weight_matrix(self) -> np.ndarray:
        """W of shape (6, 24) such that raw indices = W @ item_means (constants excluded)."""
        w = np.zeros((len(DIMENSIONS), N_ITEMS))
        for d, dim in enumerate(DIMENSIONS):
            for weight, a, b in self.formulas[dim]:
                w[d, a - 1] += weight
                w[d, b - 1] -= weight
        return w

    def raw_indices(self, means: np.ndarray) -> np.ndarray:
        """Raw indices (constants 0) from item means; ``means`` (..., 24) -> (..., 6)."""
        means = np.asarray(means, dtype=float)
        if means.shape[-1] != N_ITEMS:
            raise CultureAlignError(f"need {N_ITEMS} item means, got {means.shape[-1]}")
        return means @ self.weight_matrix().T

    def indices(self, means: np.ndarray, constants: Sequence[float] | np.ndarray) -> np.ndarray:
        """Indices with constants C added; ``means`` (..., 24), ``constants`` (6,) -> (..., 6).

        The six columns are :data:`DIMENSIONS` (PDI, IDV, MAS, UAI, LTO, IVR); each index is a weighted sum of item
        mean differences, plus its constant.

        >>> import numpy as np
        >>> q = Questionnaire.builtin()
        >>> means = np.full((2, 24), 3.0)                  # (P, 24) item means on the 1-5 scale
        >>> q.indices(means, np.zeros(6)).shape             # (P, 6)
        (2, 6)
        >>> means[0, 6] = 2.0                               # item 7 enters PDI with weight 35: 35 * (2 - 3)
        >>> q.indices(means, [10, 0, 0, 0, 0, 0])[:, 0].tolist()
        [-25.0, 10.0]
        """
        return self.raw_indices(means) + np.asarray(constants, dtype=float)


def read_means(path: str | Path) -> np.ndarray:
    """Item means 1..24 from a JSON file (a list, or an object keyed by item id / "m01") or a CSV file.

    CSV: either two columns ``item,mean`` (a header is optional) or one row of 24 numbers. Every mean must be a
    finite number in 1..5 and every item given once; anything else is a :class:`CultureAlignError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CultureAlignError(f"means file {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            from .io import read_json

            pairs = _means_from_json(read_json(path, "means file"))
        else:
            pairs = _means_from_csv(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CultureAlignError(f"means file {path} is unreadable ({exc})") from None
    except ValueError as exc:
        raise CultureAlignError(f"could not read item means from {path}: {exc}") from None
    values: dict[int, float] = {}
    for item, value in pairs:
        if item in values:
            raise CultureAlignError(f"could not read item means from {path}: item {item} is given twice")
        values[item] = value
    missing = sorted(set(range(1, N_ITEMS + 1)) - set(values))
    if missing or len(values) != N_ITEMS:
        extra = sorted(set(values) - set(range(1, N_ITEMS + 1)))
        raise CultureAlignError(
            f"{path} has {len(values)} item means; need exactly {N_ITEMS} (items 1..24), missing {missing}"
            + (f", unknown items {extra}" if extra else ""))
    means = np.array([values[i] for i in range(1, N_ITEMS + 1)])
    bad = [i + 1 for i, m in enumerate(means) if not np.isfinite(m)]
    if bad:
        raise CultureAlignError(f"{path}: the means of items {bad} are not finite numbers (NaN or infinite)")
    if np.any(means < 1) or np.any(means > 5):
        raise CultureAlignError(f"{path}: item means must lie in 1..5 (the answer scale)")
    return means


def _means_from_json(data) -> list[tuple[int, float]]:
    if isinstance(data, dict) and "means" in data:
        data = data["means"]
    if isinstance(data, list):
        return [(i + 1, _json_mean(v, f"entry {i + 1}")) for i, v in enumerate(data)]
    if isinstance(data, dict):
        return [(_item_number(k), _json_mean(v, f"item {k}")) for k, v in data.items()]
    raise ValueError(f"expected a list of 24 numbers or an object keyed by item, not {_kind(data)}")


def _json_mean(value, where: str) -> float:
    if not _is_finite_number(value):
        raise ValueError(f"{where} must be a finite number, not {value!r:.40}")
    return float(value)


def _means_from_csv(text: str) -> list[tuple[int, float]]:
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    if rows and not _is_number(rows[0][-1]):
        rows = rows[1:]  # a header
    if len(rows) == 1 and len(rows[0]) > 2:
        return [(i + 1, _csv_number(v, f"column {i + 1}")) for i, v in enumerate(rows[0])]
    out = []
    for n, row in enumerate(rows, 1):
        if len(row) != 2:
            raise ValueError(f"row {n} has {len(row)} columns; need two (item,mean) or one row of 24 numbers")
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
        raise ValueError(f"{str(key)!r:.40} is not an item number (1..24 or m01..m24)")
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
