"""The constants C of the index formulas, one per dimension of the instrument: zero, a file of numbers, or anchored
to published (or the instrument's own target) scores.

Anchored (the default): measure the model with a persona for each reference country and set
``C_d = mean over countries of (published_d - raw_d)`` (the manual's "anchor new data to published scores").
Fitted values are cached per model (path, dtype, device and a fingerprint of the weights), questionnaire and answer
format under ``<cache>/constants/``. A target that is itself a reference country gets constants fitted without it
(leave-one-out, :func:`leave_one_out`), and every record says which reference set it used.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import ConstantsKind, ConstantsSpec
from .errors import CultureAlignError
from .instrument import DIMENSIONS, Questionnaire
from .io import atomic_write_json
from .models import cache_dir
from .targets import Targets, hofstede

#: Reference countries for anchoring: large, well-studied samples from several world regions, all with the six
#: dimensions. A target that is one of them is scored with constants fitted without it (:func:`leave_one_out`).
#: An instrument with its own targets is anchored to those of them it has scores for.
REFERENCE_COUNTRIES = ("U.S.A.", "China", "India", "Germany", "Japan", "Brazil", "Great Britain", "Russia")


@dataclass
class Constants:
    values: np.ndarray                       # (n_dimensions,) in the order of ``dimensions``
    kind: str                                # "zero" | "anchored" | "file"
    details: dict = field(default_factory=dict)
    dimensions: tuple[str, ...] = DIMENSIONS  # the instrument's (default the VSM 2013's)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "values": dict(zip(self.dimensions, map(float, self.values))), **self.details}


def zero(dimensions: Sequence[str] = DIMENSIONS) -> Constants:
    return Constants(np.zeros(len(dimensions)), "zero", dimensions=tuple(dimensions))


def from_file(path: str | Path, dimensions: Sequence[str] = DIMENSIONS) -> Constants:
    """One number per dimension of the instrument (default the VSM 2013's six) as a JSON list in the order of
    ``dimensions`` (PDI, IDV, MAS, UAI, LTO, IVR), or an object keyed by dimension (also inside ``"values"``, as in
    the ``constants`` block of a measurement record)."""
    from .io import read_json

    path = Path(path)
    if not path.is_file():
        raise CultureAlignError(f"--constants: '{path}' is neither zero, anchored nor an existing JSON file")
    data = read_json(path, "constants file")
    try:
        values = np.array(_numbers(data, dimensions), dtype=float)
    except ValueError as exc:
        raise CultureAlignError(f"constants file {path}: {exc}. Give {len(dimensions)} finite numbers "
                                f"({', '.join(dimensions)}) as a JSON list or object") from None
    return Constants(values, "file", {"path": str(path)}, tuple(dimensions))


def _numbers(data, dimensions: Sequence[str]) -> list[float]:
    if isinstance(data, dict):
        if "values" in data:
            data = data["values"]
            if not isinstance(data, dict):
                raise ValueError(f"'values' must be an object keyed by dimension, not {type(data).__name__}")
        missing = [d for d in dimensions if d not in data]
        unknown = [str(k) for k in data if k not in dimensions]
        if missing or unknown:
            raise ValueError("; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                       + ([f"unknown key(s) {', '.join(unknown)[:80]}"] if unknown else [])))
        data = [data[d] for d in dimensions]
    if not isinstance(data, list):
        raise ValueError(f"expected a list or an object, not {type(data).__name__}")
    if len(data) != len(dimensions):
        raise ValueError(f"need {len(dimensions)} numbers, got {len(data)}")
    out = []
    for dim, v in zip(dimensions, data):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        try:
            ok = ok and math.isfinite(v)
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(f"{dim} must be a finite number, not {v!r:.40}")
        out.append(float(v))
    return out


def resolve(spec: ConstantsSpec | str, fit_anchored: Callable[[], Constants],
            dimensions: Sequence[str] = DIMENSIONS) -> Constants:
    """The constants ``spec`` names (a :class:`~culturealign.config.ConstantsSpec` or its string) for an instrument
    with ``dimensions``: zero, anchored (``fit_anchored()``, which measures the model or reads its cached fit) or a
    JSON file. The one place a spec becomes numbers; a session calls it from
    :meth:`~culturealign.session.Session.resolve_constants`.

    >>> resolve("zero", fit_anchored=None).values.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    spec = ConstantsSpec.parse(spec)
    if spec.kind is ConstantsKind.ZERO:
        return zero(dimensions)
    if spec.kind is ConstantsKind.ANCHORED:
        return fit_anchored()
    return from_file(spec.path, dimensions)


def anchored(raw_indices_for: Callable[[str], np.ndarray], cache_key: dict,
             references: tuple[str, ...] = REFERENCE_COUNTRIES, refit: bool = False,
             targets: Targets | None = None) -> Constants:
    """Fit anchored constants; ``raw_indices_for(country)`` measures the raw (C = 0) indices with a persona.

    targets: the instrument's targets (default Hofstede's, for the VSM 2013); its ``dimensions`` are those of the
    constants, and the fit uses those of ``references`` that have a score on each. The fit keeps each reference
    country's raw indices (``details["raw_indices"]``), so that :func:`leave_one_out` can refit without one of them
    at no cost.
    """
    targets = targets or hofstede()
    dims = targets.dimensions
    countries = [c for c in map(targets.find, references) if c is not None and all(d in c.scores for d in dims)]
    if not countries:
        raise CultureAlignError(f"anchored constants need reference countries with a score on every dimension "
                                f"({', '.join(dims)}); {targets.source} has none of {', '.join(references)}: add some "
                                "to its targets, or use --constants zero or a file")
    key = hashlib.sha256(json.dumps({**cache_key, "references": references}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "constants" / f"{key}.json"
    if path.is_file() and not refit:
        cached = _read_cached_fit(path, [c.name for c in countries], dims)
        if cached is not None:
            return cached
    raw, published = {}, {}
    for country in countries:
        raw[country.name] = np.asarray(raw_indices_for(country.name), dtype=float)
        published[country.name] = country.vector(dims)
    values = np.mean([published[c] - raw[c] for c in raw], axis=0)
    details = {"references": list(raw), "raw_indices": {c: dict(zip(dims, map(float, v))) for c, v in raw.items()},
               "fitted_for": cache_key}
    result = Constants(values, "anchored", details, dims)
    atomic_write_json(path, result.to_dict())
    result.details["cache"] = str(path)
    return result


def _read_cached_fit(path: Path, references: list[str], dimensions: tuple[str, ...]) -> Constants | None:
    """A cached fit, or None when the file is unreadable or incomplete (it is then refitted)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        values = np.array([float(data["values"][d]) for d in dimensions])
        raw = data["raw_indices"]
        raw_values = [float(raw[c][d]) for c in references for d in dimensions]
        if data["references"] != references or not np.all(np.isfinite([*values, *raw_values])):
            raise ValueError("another reference set, or values that are not finite")
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # a corrupt or outdated cache entry is refitted
    return Constants(values, "anchored",
                     {k: v for k, v in data.items() if k not in ("kind", "values")} | {"cache": str(path)}, dimensions)


def leave_one_out(fit: Constants, country: str, targets: Targets | None = None) -> Constants:
    """The anchored constants fitted without ``country`` when it is one of the reference countries.

    A target's own published scores must not calibrate its loss: for an anchor country C is the mean of
    ``published - raw`` over the other references (from the raw indices kept in the fit, without measuring again).
    The result records the set used (``references``) and the country left out (``left_out``, None when no
    country was left out). Constants that are not an anchored fit with raw indices are returned as they are.
    ``targets``: where the references' scores come from (default Hofstede's).
    """
    refs = fit.details.get("references")
    raw = fit.details.get("raw_indices")
    if fit.kind != "anchored" or not isinstance(refs, list) or not isinstance(raw, dict) or "left_out" in fit.details:
        return fit
    if country not in refs:
        return Constants(fit.values.copy(), fit.kind, {**fit.details, "left_out": None}, fit.dimensions)
    kept = [c for c in refs if c != country]
    if not kept:
        raise CultureAlignError(f"cannot fit constants without {country}: it is the only reference country")
    targets = targets or hofstede()
    dims = fit.dimensions
    values = np.mean([targets.lookup(c).vector(dims) - np.array([raw[c][d] for d in dims], dtype=float)
                      for c in kept], axis=0)
    return Constants(values, "anchored", {**fit.details, "references": kept, "left_out": country,
                                          "raw_indices": {c: raw[c] for c in kept}}, dims)


def constants_cache_key(model_path: str, questionnaire: Questionnaire, prompt_format: dict, scoring: str,
                        dtype: str | None = None, device: str | None = None, weights: str | None = None) -> dict:
    """What anchored constants depend on: the model (its path, the dtype and device it runs in, and a fingerprint
    of its weights, see :func:`culturealign.models.weights_fingerprint`), the questionnaire text and weights, and
    the answer format."""
    q_hash = hashlib.sha256(json.dumps([questionnaire.raw, questionnaire.formulas], sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    return {"model": model_path, "dtype": dtype, "device": device, "weights": weights, "questionnaire": q_hash,
            "format": prompt_format, "scoring": scoring}
