"""The alignment objective: L1 distance between a model's indices and a country's published scores."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

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

    def survey_loss(self, expected: np.ndarray, objective: str = "per-order") -> np.ndarray:
        """The alignment objective over every block a survey was asked in: ``expected`` ``(P, n_orders, n_items)``
        (one wording) or ``(P, n_wordings, n_orders, n_items)`` -> ``(P,)``.

        ``per-order``: each (wording, order) block's L1 loss, averaged; ``pooled``: per wording the L1 loss of the
        expected answers averaged over the orders, averaged over the wordings. By the triangle inequality per-order
        is never below pooled: a prompt cannot meet it by moving the two orders apart.

        >>> from culturealign.instrument import Questionnaire
        >>> from culturealign.targets import lookup
        >>> objective = Objective(Questionnaire.builtin(), np.zeros(6), lookup("China"), ["PDI"])
        >>> expected = np.full((1, 2, 24), 3.0)           # (P, orders, 24); China's PDI is 80
        >>> expected[0, 0, 6] = 3 + 160 / 35              # item 7 (weight 35): PDI 160 in one order, 0 in the other
        >>> objective.survey_loss(expected, "pooled").round(6).tolist()      # their mean is 80: met
        [0.0]
        >>> objective.survey_loss(expected, "per-order").round(6).tolist()   # each order is 80 off
        [80.0]
        """
        expected = np.asarray(expected, dtype=float)
        if expected.ndim == 3:
            expected = expected[:, None]
        if expected.ndim != 4:
            raise CultureAlignError(f"expected answers must be (P, n_orders, n_items) or (P, n_wordings, n_orders, "
                                    f"n_items), not {expected.shape}")
        return self.survey_loss_of_indices(self.indices(expected.reshape(-1, expected.shape[-1])).reshape(
            *expected.shape[:3], -1), objective)

    def survey_loss_of_indices(self, indices: np.ndarray, objective: str = "per-order") -> np.ndarray:
        """:meth:`survey_loss` from each block's indices ``(P, n_wordings, n_orders, n_dimensions)`` (NaN blocks,
        orders not asked, are left out) -> ``(P,)``."""
        indices = np.asarray(indices, dtype=float)
        with warnings.catch_warnings():   # a wording none of whose orders a stochastic step ran: all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            if objective == "pooled":
                indices = np.nanmean(indices, axis=2, keepdims=True)   # the indices are affine in the expected answers
            blocks = indices.reshape(indices.shape[0], -1, indices.shape[-1])
            losses = np.stack([self.loss_of_indices(blocks[:, b]) for b in range(blocks.shape[1])], axis=1)
            return np.nanmean(losses, axis=1)

    def reference_mean_loss(self) -> float:
        """Loss of the predictor that outputs raw indices 0 (under anchored constants: the reference mean)."""
        return float(np.abs(self.constants[self._dim_index] - self.target_vector).sum())
