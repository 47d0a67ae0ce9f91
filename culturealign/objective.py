"""The alignment objective: L1 distance between a model's indices and a country's published scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import parse_dimensions  # noqa: F401  (re-exported: objective.parse_dimensions)
from .errors import CultureAlignError
from .instrument import Questionnaire
from .targets import CountryTarget


@dataclass
class Objective:
    """Loss of expected answers against one country.

    ``loss(expected)`` takes ``(P, n_items)`` expected answers and returns ``(P,)`` L1 losses (index points) over
    ``dimensions``; ``indices`` returns the ``(P, n_dimensions)`` indices with the constants applied (columns: the
    questionnaire's dimensions; for the VSM 2013 24 items and six dimensions).

    >>> from culturealign.instrument import Questionnaire
    >>> from culturealign.targets import lookup
    >>> objective = Objective(Questionnaire.builtin(), np.zeros(6), lookup("China"), ["PDI", "IDV"])
    >>> expected = np.full((3, 24), 3.0)                # (P, 24) expected answers, 1-5
    >>> objective.indices(expected).shape, objective.loss(expected).shape
    ((3, 6), (3,))
    >>> objective.loss(expected).tolist()              # indices 0 vs China's PDI 80 and IDV 20
    [100.0, 100.0, 100.0]
    """

    questionnaire: Questionnaire
    constants: np.ndarray
    target: CountryTarget
    dimensions: list[str]

    def __post_init__(self) -> None:
        self.constants = np.asarray(self.constants, dtype=float)
        unknown = [d for d in self.dimensions if d not in self.questionnaire.dimensions]
        if unknown:
            raise CultureAlignError(f"questionnaire {self.questionnaire.source} has no dimension {', '.join(unknown)} "
                                    f"(it has {', '.join(self.questionnaire.dimensions)})")
        self.target_vector = self.target.vector(self.dimensions)  # raises if a dimension is missing
        self._dim_index = [self.questionnaire.dimensions.index(d) for d in self.dimensions]

    def indices(self, expected: np.ndarray) -> np.ndarray:
        return self.questionnaire.indices(np.atleast_2d(expected), self.constants)

    def errors(self, expected: np.ndarray) -> np.ndarray:
        """``(P, len(dimensions))`` signed errors model - target."""
        return self.indices(expected)[:, self._dim_index] - self.target_vector

    def loss(self, expected: np.ndarray) -> np.ndarray:
        return self.loss_of_indices(self.indices(expected))

    def loss_of_indices(self, indices: np.ndarray) -> np.ndarray:
        """``(P, n_dimensions)`` indices -> ``(P,)`` L1 losses over ``dimensions``."""
        return np.abs(np.atleast_2d(indices)[:, self._dim_index] - self.target_vector).sum(axis=1)

    def reference_mean_loss(self) -> float:
        """Loss of the predictor that outputs raw indices 0 (under anchored constants: the reference mean)."""
        return float(np.abs(self.constants[self._dim_index] - self.target_vector).sum())
