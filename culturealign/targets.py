"""Country targets: Hofstede's published six-dimension scores (2015-08-16 matrix plus a supplement).

A country answers to its English name, Hofstede's own 3-letter code, and ISO 3166 alpha-2 / alpha-3 codes,
case-insensitively (``CN``, ``CHN``, ``China`` and ``CHI`` all find China). Where a Hofstede code and an ISO
code clash, Hofstede's wins (``SLV`` is Slovenia; El Salvador is ``SAL``, ``SV`` or its name).
"""
from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, Sequence

import numpy as np
import pycountry

from .config import parse_dimensions
from .errors import CultureAlignError
from .instrument import DIMENSIONS

MATRIX_SOURCE = "Hofstede 6-D dimension data matrix, release 2015-08-16 (geerthofstede.com)"
_CSV_COLUMNS = {"PDI": "pdi", "IDV": "idv", "MAS": "mas", "UAI": "uai", "LTO": "ltowvs", "IVR": "ivr"}
# Hofstede names that pycountry's exact lookup does not know.
_ISO_OVERRIDES = {"Bosnia": "BA", "Czech Rep": "CZ", "Dominican Rep": "DO", "Great Britain": "GB",
                  "Korea South": "KR", "Kyrgyz Rep": "KG", "Macedonia Rep": "MK", "Russia": "RU",
                  "Slovak Rep": "SK", "Turkey": "TR", "U.S.A.": "US"}
_EXTRA_ALIASES = {"US": ["usa", "united states of america", "america"], "GB": ["uk", "england", "britain"],
                  "KR": ["south korea", "korea"], "RU": ["russian federation"], "CZ": ["czechia", "czech republic"],
                  "TR": ["turkiye"], "IR": ["iran"], "VN": ["viet nam"], "TW": ["taiwan"]}


@dataclass(frozen=True)
class CountryTarget:
    """Published scores of one country; ``scores`` holds only the dimensions that were published."""

    code: str                      # Hofstede's code, e.g. "CHI"
    name: str                      # Hofstede's English name, e.g. "China"
    scores: dict[str, float]
    sources: dict[str, str]        # dimension -> where the score comes from
    iso2: str | None = None
    iso3: str | None = None
    aliases: tuple[str, ...] = field(default=(), repr=False)

    @property
    def dimensions(self) -> list[str]:
        return [d for d in DIMENSIONS if d in self.scores]

    def vector(self, dimensions: Sequence[str] = DIMENSIONS) -> np.ndarray:
        """Scores of ``dimensions`` as an array; a missing one is an error naming what is missing."""
        missing = [d for d in dimensions if d not in self.scores]
        if missing:
            raise CultureAlignError(
                f"{self.name} has no published score for {', '.join(missing)} (it has {', '.join(self.dimensions)}); "
                f"restrict the loss with --dimensions {','.join(self.dimensions)}")
        return np.array([self.scores[d] for d in dimensions], dtype=float)

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "iso2": self.iso2, "iso3": self.iso3,
                "scores": self.scores, "sources": self.sources}


def _read_csv(name: str) -> list[dict]:
    text = resources.files("culturealign").joinpath(f"data/hofstede/{name}").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=1)
def all_countries() -> tuple[CountryTarget, ...]:
    """Every country or region with at least one published score, the supplement applied."""
    supplement = {r["ctr"]: r for r in _read_csv("supplement.csv")}
    out = []
    for row in _read_csv("6-dimensions-for-website-2015-08-16.csv"):
        scores, sources = {}, {}
        extra = supplement.get(row["ctr"])
        for dim, col in _CSV_COLUMNS.items():
            if row[col] not in ("#NULL!", ""):
                scores[dim], sources[dim] = float(row[col]), MATRIX_SOURCE
            elif extra and extra[col] not in ("#NULL!", ""):
                scores[dim], sources[dim] = float(extra[col]), f"supplement: {extra['source']}"
        iso = _iso_country(row["country"])
        aliases = {row["ctr"].lower(), row["country"].lower()}
        if iso is not None:
            aliases |= {iso.alpha_2.lower(), iso.alpha_3.lower(), iso.name.lower()}
            aliases |= {getattr(iso, a).lower() for a in ("common_name", "official_name") if hasattr(iso, a)}
            aliases |= set(_EXTRA_ALIASES.get(iso.alpha_2, []))
        out.append(CountryTarget(row["ctr"], row["country"], scores, sources,
                                 iso.alpha_2 if iso else None, iso.alpha_3 if iso else None,
                                 tuple(sorted(aliases))))
    return tuple(out)


def _iso_country(name: str):
    code = _ISO_OVERRIDES.get(name)
    try:
        return pycountry.countries.lookup(code or name)
    except LookupError:
        return None  # a region or a sub-national sample (e.g. "Arab countries", "Belgium French")


def lookup(query: str) -> CountryTarget:
    """The country that ``query`` names; an unknown name lists the closest matches.

    >>> china = lookup("CN")
    >>> china.name, china.code, china.iso3, lookup("china") is china is lookup("CHN")
    ('China', 'CHI', 'CHN', True)
    >>> china.vector(["PDI", "IDV"])                    # (len(dimensions),) published scores
    array([80., 20.])
    >>> lookup("Chnia")                                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
    culturealign.errors.CultureAlignError: unknown country 'Chnia'. Closest matches: China (CHI), Czech Rep (CZE), India (IND). Run ...
    """
    key = query.strip().lower()
    index = _alias_index()
    if key in index:
        return index[key]
    close = difflib.get_close_matches(key, list(index), n=5, cutoff=0.5)
    names = list(dict.fromkeys(f"{index[a].name} ({index[a].code})" for a in close))
    hint = f" Closest matches: {', '.join(names)}." if names else ""
    raise CultureAlignError(f"unknown country '{query}'.{hint} Run `culturealign countries` for the full list.")


@lru_cache(maxsize=1)
def _alias_index() -> dict[str, CountryTarget]:
    # Hofstede's own codes win over ISO codes where they clash (SLV is Slovenia to Hofstede, El Salvador to ISO).
    index = {alias: c for c in all_countries() for alias in c.aliases}
    index.update({c.code.lower(): c for c in all_countries()})
    return index


def lookup_many(queries: Iterable[str]) -> list[CountryTarget]:
    return [lookup(q) for q in queries]


def check_dimensions(targets: Iterable[CountryTarget], dimensions: str | Sequence[str] | None = None) -> list[str]:
    """The loss dimensions (``"LTO,IVR"``, a list, or None for all six), after checking that every target has a
    published score for each: a missing one fails here, before any model loads."""
    dims = parse_dimensions(dimensions)
    for target in targets:
        target.vector(dims)
    return dims


def countries_for(spec: str, dimensions: str | Sequence[str] | None = None) -> list[CountryTarget]:
    """``"US,CN"`` or ``"all"`` (every country with a published score on each loss dimension) as targets, each
    checked to have the loss ``dimensions``; none is a clear error."""
    dims = parse_dimensions(dimensions)
    if spec.strip().lower() == "all":
        targets = [c for c in all_countries() if all(d in c.scores for d in dims)]
    else:
        targets = lookup_many([c.strip() for c in spec.split(",") if c.strip()])
    if not targets:
        raise CultureAlignError("give at least one country with --countries (see `culturealign countries`)")
    check_dimensions(targets, dims)
    return targets
