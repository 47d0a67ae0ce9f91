"""Country targets: Hofstede's published six-dimension scores (2015-08-16 matrix plus a supplement), or an
instrument's own target scores (the ``targets`` section of its file), as a :class:`Targets` table.

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
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pycountry

from .config import parse_dimensions
from .errors import CultureAlignError
from .instrument import DIMENSIONS, Questionnaire

MATRIX_SOURCE = "Hofstede 6-D dimension data matrix, release 2015-08-16 (geerthofstede.com)"
_CSV_COLUMNS = {"PDI": "pdi", "IDV": "idv", "MAS": "mas", "UAI": "uai", "LTO": "ltowvs", "IVR": "ivr"}
#: the dimensions Hofstede's matrix has scores for: the VSM 2013's
HOFSTEDE_DIMENSIONS: tuple[str, ...] = tuple(_CSV_COLUMNS)
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
        """The dimensions it has a score for, in its table's order."""
        return list(self.scores)

    def vector(self, dimensions: Sequence[str] = DIMENSIONS) -> np.ndarray:
        """Scores of ``dimensions`` (default Hofstede's six) as an array; a missing one is an error naming what is
        missing."""
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
        out.append(CountryTarget(row["ctr"], row["country"], scores, sources,
                                 iso.alpha_2 if iso else None, iso.alpha_3 if iso else None,
                                 _aliases(row["country"], row["ctr"], iso)))
    return tuple(out)


def _aliases(name: str, code: str, iso) -> tuple[str, ...]:
    """Every lower-case name a country answers to: its name, its code and, when ISO 3166 knows it, its ISO codes
    and names."""
    aliases = {code.lower(), name.strip().lower()}
    if iso is not None:
        aliases |= {iso.alpha_2.lower(), iso.alpha_3.lower(), iso.name.lower()}
        aliases |= {getattr(iso, a).lower() for a in ("common_name", "official_name") if hasattr(iso, a)}
        aliases |= set(_EXTRA_ALIASES.get(iso.alpha_2, []))
    return tuple(sorted(aliases))


def _iso_country(name: str):
    code = _ISO_OVERRIDES.get(name)
    try:
        return pycountry.countries.lookup(code or name)
    except LookupError:
        return None  # a region or a sub-national sample (e.g. "Arab countries", "Belgium French")


class Targets:
    """A table of countries with target scores for an instrument's ``dimensions``: Hofstede's published matrix
    (:func:`hofstede`, for the VSM 2013 and its translations) or an instrument's own ``targets`` section
    (:func:`targets_for`). Countries are found by name or code (:meth:`lookup`)."""

    def __init__(self, countries: Sequence[CountryTarget], dimensions: Sequence[str], source: str,
                 index: dict[str, CountryTarget] | None = None):
        self.countries, self.dimensions, self.source = tuple(countries), tuple(dimensions), source
        self._index = _index(self.countries) if index is None else index

    def find(self, query: str) -> CountryTarget | None:
        """The country ``query`` names exactly (any case), or None."""
        return self._index.get(query.strip().lower())

    def lookup(self, query: str) -> CountryTarget:
        """The country that ``query`` names; an unknown name lists the closest matches."""
        found = self.find(query)
        if found is not None:
            return found
        close = difflib.get_close_matches(query.strip().lower(), list(self._index), n=5, cutoff=0.5)
        names = list(dict.fromkeys(f"{self._index[a].name} ({self._index[a].code})" for a in close))
        hint = f" Closest matches: {', '.join(names)}." if names else ""
        if self.source == MATRIX_SOURCE:
            more = " Run `culturealign countries` for the full list."
        else:
            more = f" The targets of {self.source}: {', '.join(c.name for c in self.countries)[:300]}."
        raise CultureAlignError(f"unknown country '{query}'.{hint}{more}")

    def check(self, targets: Iterable[CountryTarget], dimensions: str | Sequence[str] | None = None) -> list[str]:
        """The loss dimensions (``"LTO,IVR"``, a list, or None for all of the instrument's), after checking that
        every target has a score for each: a missing one fails here, before any model loads."""
        dims = parse_dimensions(dimensions, self.dimensions)
        for target in targets:
            target.vector(dims)
        return dims

    def select(self, spec: str, dimensions: str | Sequence[str] | None = None) -> list[CountryTarget]:
        """``"US,CN"`` or ``"all"`` (every country with a score on each loss dimension) as targets, each checked to
        have the loss ``dimensions``; none is a clear error."""
        dims = parse_dimensions(dimensions, self.dimensions)
        if spec.strip().lower() == "all":
            targets = [c for c in self.countries if all(d in c.scores for d in dims)]
        else:
            targets = [self.lookup(c.strip()) for c in spec.split(",") if c.strip()]
        if not targets:
            raise CultureAlignError("give at least one country with --countries (see `culturealign countries`)")
        self.check(targets, dims)
        return targets


def hofstede(dimensions: Sequence[str] = HOFSTEDE_DIMENSIONS) -> Targets:
    """Hofstede's published scores as the targets of an instrument with ``dimensions`` (some of his six)."""
    return Targets(all_countries(), dimensions, MATRIX_SOURCE, _alias_index())


def targets_for(questionnaire: Questionnaire | str | Path | None) -> Targets:
    """The targets of an instrument (a :class:`Questionnaire`, or what ``--questionnaire`` takes: None for the
    built-in VSM 2013, a registered name or a file): its own ``targets`` section, else Hofstede's published scores,
    which cover only his six dimensions (another dimension without targets is a clear error).

    >>> targets_for(None).lookup("CN").scores["PDI"]
    80.0
    """
    q = questionnaire if isinstance(questionnaire, Questionnaire) else Questionnaire.load(questionnaire)
    if q.target_scores is None:
        unknown = [d for d in q.dimensions if d not in HOFSTEDE_DIMENSIONS]
        if unknown:
            raise CultureAlignError(
                f"questionnaire {q.source} has no target scores for {', '.join(unknown)} (Hofstede's published "
                f"scores cover {', '.join(HOFSTEDE_DIMENSIONS)}): give it a 'targets' section, "
                f'{{"<country>": {{"{unknown[0]}": <score>, ...}}, ...}} (docs/extending.md: An instrument)')
        return hofstede(q.dimensions)
    source = f"the targets section of {q.source}"
    by_iso = {}
    for c in all_countries():
        by_iso.setdefault(c.iso2, c)
    out, seen = [], {}
    for name, scores in q.target_scores.items():
        # a country Hofstede knows keeps his code and names, so "CN", "U.S.A." and the reference countries find it
        iso = _iso_country(name)
        known = _alias_index().get(name.strip().lower()) or (by_iso.get(iso.alpha_2) if iso else None)
        if known is not None:
            code, iso2, iso3 = known.code, known.iso2, known.iso3
            aliases = tuple(sorted({*known.aliases, name.strip().lower()}))
        else:
            code = iso.alpha_3 if iso else name.strip()
            iso2, iso3 = (iso.alpha_2, iso.alpha_3) if iso else (None, None)
            aliases = _aliases(name, code, iso)
        if code in seen:
            raise CultureAlignError(f"questionnaire {q.source}: targets '{seen[code]}' and '{name}' are the same "
                                    "country; give its scores once")
        seen[code] = name
        out.append(CountryTarget(code, name.strip(), dict(scores), dict.fromkeys(scores, source), iso2, iso3,
                                 aliases))
    return Targets(out, q.dimensions, source)


def lookup(query: str) -> CountryTarget:
    """The country that ``query`` names in Hofstede's matrix (an instrument's own targets:
    ``targets_for(questionnaire).lookup``); an unknown name lists the closest matches.

    >>> china = lookup("CN")
    >>> china.name, china.code, china.iso3, lookup("china") is china is lookup("CHN")
    ('China', 'CHI', 'CHN', True)
    >>> china.vector(["PDI", "IDV"])                    # (len(dimensions),) published scores
    array([80., 20.])
    >>> lookup("Chnia")                                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
    culturealign.errors.CultureAlignError: unknown country 'Chnia'. Closest matches: China (CHI), Czech Rep (CZE), India (IND). Run ...
    """
    return hofstede().lookup(query)


@lru_cache(maxsize=1)
def _alias_index() -> dict[str, CountryTarget]:
    return _index(all_countries())


def _index(countries: Sequence[CountryTarget]) -> dict[str, CountryTarget]:
    """Every alias of every country -> the country. Codes win over other countries' aliases where they clash
    (SLV is Slovenia to Hofstede, El Salvador to ISO)."""
    index = {alias: c for c in countries for alias in c.aliases}
    index.update({c.code.lower(): c for c in countries})
    return index


def lookup_many(queries: Iterable[str]) -> list[CountryTarget]:
    return [lookup(q) for q in queries]


def check_dimensions(targets: Iterable[CountryTarget], dimensions: str | Sequence[str] | None = None) -> list[str]:
    """:meth:`Targets.check` for Hofstede's six dimensions."""
    return hofstede().check(targets, dimensions)


def countries_for(spec: str, dimensions: str | Sequence[str] | None = None) -> list[CountryTarget]:
    """:meth:`Targets.select` in Hofstede's matrix."""
    return hofstede().select(spec, dimensions)
