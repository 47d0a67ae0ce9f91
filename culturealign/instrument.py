"""The survey instrument: the VSM 2013 questionnaire, its validation and the six index formulas.

Answers are on a 1..5 scale (1 = the first option of the item's scale). An index is a weighted sum of
differences between item means plus a constant C: ``index = sum_w w * (mean(a) - mean(b)) + C``.
"""
from __future__ import annotations

import json
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
        path = Path(path)
        if not path.is_file():
            raise CultureAlignError(f"questionnaire file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CultureAlignError(f"questionnaire file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def load(cls, path: str | Path | None) -> "Questionnaire":
        return cls.builtin() if path is None else cls.from_file(path)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Questionnaire":
        """Validate ``data`` (the schema of the built-in ``vsm2013.json``) and build a questionnaire."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise CultureAlignError(f"questionnaire {source}: top level must be a JSON object")
        scales = data.get("scales") or {}
        blocks = data.get("blocks") or {}
        items_raw = data.get("items")
        if not isinstance(items_raw, list):
            raise CultureAlignError(f"questionnaire {source}: missing list 'items'")
        for name, options in scales.items():
            if not isinstance(options, list) or len(options) != N_OPTIONS:
                n = len(options) if isinstance(options, list) else "no"
                problems.append(f"scale '{name}' has {n} options, needs {N_OPTIONS}")
        items: dict[int, Item] = {}
        for raw in items_raw:
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), int) or not raw.get("text"):
                problems.append(f"item {raw!r:.60} needs an integer 'id' and a non-empty 'text'")
                continue
            iid = raw["id"]
            if iid in items:
                problems.append(f"item {iid} appears twice")
            block = blocks.get(raw.get("block"), {}) if raw.get("block") is not None else {}
            if raw.get("block") is not None and raw["block"] not in blocks:
                problems.append(f"item {iid} names unknown block '{raw['block']}'")
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
        indices = data.get("indices") or {}
        for dim in DIMENSIONS:
            spec = indices.get(dim)
            if not spec or not spec.get("terms"):
                problems.append(f"index formula for {dim} is missing")
                continue
            terms = []
            for term in spec["terms"]:
                if (not isinstance(term, list) or len(term) != 3
                        or any(t not in range(1, N_ITEMS + 1) for t in term[1:])):
                    problems.append(f"index {dim}: term {term} must be [weight, item_a, item_b] with items in 1..24")
                    continue
                terms.append((float(term[0]), int(term[1]), int(term[2])))
            formulas[dim] = terms
            names[dim] = spec.get("name", dim)
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
        """Indices with constants C added; ``means`` (..., 24), ``constants`` (6,) -> (..., 6)."""
        return self.raw_indices(means) + np.asarray(constants, dtype=float)


def read_means(path: str | Path) -> np.ndarray:
    """Item means 1..24 from a JSON file (a list, or an object keyed by item id / "m01") or a CSV file.

    CSV: either two columns ``item,mean`` (a header is optional) or one row of 24 numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise CultureAlignError(f"means file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    values: dict[int, float] = {}
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if isinstance(data, dict) and "means" in data:
                data = data["means"]
            if isinstance(data, list):
                values = {i + 1: float(v) for i, v in enumerate(data)}
            elif isinstance(data, dict):
                values = {int(str(k).lower().lstrip("m")): float(v) for k, v in data.items()}
            else:
                raise ValueError("expected a list or an object")
        else:
            rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
            if rows and not _is_number(rows[0][-1]):
                rows = rows[1:]
            if len(rows) == 1 and len(rows[0]) > 2:
                values = {i + 1: float(v) for i, v in enumerate(rows[0])}
            else:
                values = {int(r[0].lower().lstrip("m")): float(r[1]) for r in rows}
    except (ValueError, IndexError, json.JSONDecodeError) as exc:
        raise CultureAlignError(f"could not read item means from {path}: {exc}") from None
    missing = sorted(set(range(1, N_ITEMS + 1)) - set(values))
    if missing or len(values) != N_ITEMS:
        raise CultureAlignError(
            f"{path} has {len(values)} item means; need exactly {N_ITEMS} (items 1..24), missing {missing}")
    means = np.array([values[i] for i in range(1, N_ITEMS + 1)])
    if np.any(means < 1) or np.any(means > 5):
        raise CultureAlignError(f"{path}: item means must lie in 1..5 (the answer scale)")
    return means


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
