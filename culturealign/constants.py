"""The constants C of the index formulas: zero, a file of six numbers, or anchored to published scores.

Anchored (the default): measure the model with a persona for each reference country and set
``C_d = mean over countries of (published_d - raw_d)`` (the manual's "anchor new data to published scores").
Fitted values are cached per model, questionnaire and answer format under ``<cache>/constants/``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import CultureAlignError
from .instrument import DIMENSIONS, Questionnaire
from .io import atomic_write_json
from .models import cache_dir
from .targets import lookup

#: Reference countries for anchoring (the NOTES.md prototype's set): all have the six dimensions.
REFERENCE_COUNTRIES = ("U.S.A.", "China", "India", "Germany", "Japan", "Brazil", "Great Britain", "Russia")


@dataclass
class Constants:
    values: np.ndarray                       # (6,) in DIMENSIONS order
    kind: str                                # "zero" | "anchored" | "file"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "values": dict(zip(DIMENSIONS, map(float, self.values))), **self.details}


def zero() -> Constants:
    return Constants(np.zeros(len(DIMENSIONS)), "zero")


def from_file(path: str | Path) -> Constants:
    """Six numbers as a JSON list in PDI, IDV, MAS, UAI, LTO, IVR order, or an object keyed by dimension."""
    path = Path(path)
    if not path.is_file():
        raise CultureAlignError(f"--constants: '{path}' is neither zero, anchored nor an existing JSON file")
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            data = data.get("values", data)
            missing = [d for d in DIMENSIONS if d not in data]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            data = [data[d] for d in DIMENSIONS]
        values = np.array([float(v) for v in data])
        if values.shape != (len(DIMENSIONS),):
            raise ValueError(f"need 6 numbers, got {len(values)}")
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CultureAlignError(f"constants file {path}: {exc}. Give six numbers ({', '.join(DIMENSIONS)}) as a "
                                "JSON list or object") from None
    return Constants(values, "file", {"path": str(path)})


def anchored(raw_indices_for: Callable[[str], np.ndarray], cache_key: dict,
             references: tuple[str, ...] = REFERENCE_COUNTRIES, refit: bool = False) -> Constants:
    """Fit anchored constants; ``raw_indices_for(country)`` measures the raw (C = 0) indices with a persona."""
    key = hashlib.sha256(json.dumps({**cache_key, "references": references}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "constants" / f"{key}.json"
    if path.is_file() and not refit:
        try:
            data = json.loads(path.read_text())
            return Constants(np.array([data["values"][d] for d in DIMENSIONS]), "anchored",
                             {k: v for k, v in data.items() if k not in ("kind", "values")} | {"cache": str(path)})
        except (KeyError, json.JSONDecodeError):
            pass  # a corrupt cache entry is refitted
    raw, published = {}, {}
    for name in references:
        country = lookup(name)
        raw[country.name] = np.asarray(raw_indices_for(country.name), dtype=float)
        published[country.name] = country.vector()
    values = np.mean([published[c] - raw[c] for c in raw], axis=0)
    details = {"references": list(raw), "raw_indices": {c: dict(zip(DIMENSIONS, map(float, v))) for c, v in raw.items()},
               "fitted_for": cache_key}
    result = Constants(values, "anchored", details)
    atomic_write_json(path, result.to_dict())
    result.details["cache"] = str(path)
    return result


def constants_cache_key(model_path: str, questionnaire: Questionnaire, prompt_format: dict, scoring: str) -> dict:
    """What anchored constants depend on: the model, the questionnaire text and weights, and the answer format."""
    q_hash = hashlib.sha256(json.dumps([questionnaire.raw, questionnaire.formulas], sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    return {"model": model_path, "questionnaire": q_hash, "format": prompt_format, "scoring": scoring}
