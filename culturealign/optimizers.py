"""Black-box optimisers behind one ask/tell interface (nevergrad underneath).

The caller owns the loop: ``zs = opt.ask()`` gives a whole population ``(popsize, dim)``, the caller scores it in
one batched pass, ``opt.tell(zs, losses)`` reports back. Given the seed, ``ask`` depends only on the losses told
before it, so a run resumes exactly by replaying its recorded losses (no pickled state: see :mod:`align`).
"""
from __future__ import annotations

import nevergrad as ng
import numpy as np

from .errors import CultureAlignError

OPTIMIZERS = ("de", "cma", "random")


class AskTellOptimizer:
    """Minimises over z in R^dim, starting at z = 0 with unit scale.

    name: ``de`` (Differential Evolution, the paper's), ``cma`` (CMA-ES; diagonal above 2000 dims) or ``random``
    (random search around the start). popsize: candidates per generation. seed: fixes every random draw.
    """

    def __init__(self, name: str, dim: int, popsize: int, budget: int, seed: int):
        if name not in OPTIMIZERS:
            raise CultureAlignError(f"unknown optimiser '{name}': use one of {', '.join(OPTIMIZERS)}")
        if popsize < 4 and name == "de":
            raise CultureAlignError("differential evolution needs --popsize of at least 4")
        if budget < popsize:
            raise CultureAlignError(f"--budget ({budget}) must be at least --popsize ({popsize})")
        self.name, self.dim, self.popsize, self.budget, self.seed = name, dim, popsize, budget, seed
        param = ng.p.Array(init=np.zeros(dim)).set_mutation(sigma=1.0)
        param.random_state = np.random.RandomState(seed)
        if name == "de":
            family = ng.families.DifferentialEvolution(crossover="twopoints", popsize=popsize)
        elif name == "cma":
            family = ng.families.ParametrizedCMA(popsize=popsize, diagonal=dim > 2000, scale=1.0)
        else:
            family = ng.families.RandomSearchMaker(sampler="gaussian", scale=1.0, middle_point=True)
        self._opt = family(parametrization=param, budget=budget, num_workers=popsize)
        self._pending: list = []

    def ask(self) -> np.ndarray:
        """The next generation ``(popsize, dim)`` (fewer when the budget runs out)."""
        n = min(self.popsize, self.budget - self._opt.num_tell)
        self._pending = [self._opt.ask() for _ in range(n)]
        return np.stack([c.value for c in self._pending]) if self._pending else np.zeros((0, self.dim))

    def tell(self, zs: np.ndarray, losses: np.ndarray) -> None:
        if len(losses) != len(self._pending):
            raise ValueError("tell() needs one loss per candidate of the last ask()")
        for cand, loss in zip(self._pending, losses):
            self._opt.tell(cand, float(loss))
        self._pending = []

    @property
    def evaluations(self) -> int:
        return self._opt.num_tell

    @property
    def done(self) -> bool:
        return self._opt.num_tell >= self.budget
