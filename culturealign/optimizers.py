"""Black-box optimisers behind one ask/tell interface (nevergrad underneath), found by name in a registry.

The caller owns the loop: ``zs = opt.ask()`` gives a whole population ``(popsize, dim)``, the caller scores it in
one batched pass, ``opt.tell(zs, losses)`` reports back. Given the seed, ``ask`` depends only on the losses told
before it, so a run resumes exactly by replaying its recorded losses (no pickled state: see :mod:`align`).

An optimiser is a factory registered under its name (as nevergrad's ``set_name(..., register=True)``): it takes
``(dim, popsize)`` and returns a configured nevergrad optimiser family, and may raise a
:class:`CultureAlignError` for settings it cannot use. Adding one is one function and one line::

    @register_optimizer("pso")
    def particle_swarm(dim: int, popsize: int):
        return ng.families.ConfPSO(popsize=popsize)
"""
from __future__ import annotations

from typing import Callable

import nevergrad as ng
import numpy as np

from .errors import CultureAlignError

OPTIMIZERS: dict[str, Callable] = {}  # name -> factory(dim, popsize) -> a nevergrad ConfiguredOptimizer


def register_optimizer(name: str) -> Callable:
    """Decorator: register ``factory(dim, popsize)`` as the black-box optimiser ``name`` (``--optimizer name``)."""
    def register(factory: Callable) -> Callable:
        OPTIMIZERS[name] = factory
        return factory
    return register


@register_optimizer("de")
def differential_evolution(dim: int, popsize: int):
    """Differential Evolution, the paper's (two-point crossover)."""
    if popsize < 4:
        raise CultureAlignError("differential evolution needs --popsize of at least 4")
    return ng.families.DifferentialEvolution(crossover="twopoints", popsize=popsize)


@register_optimizer("cma")
def cma_es(dim: int, popsize: int):
    """CMA-ES; diagonal above 2000 dimensions (a full covariance would not fit)."""
    return ng.families.ParametrizedCMA(popsize=popsize, diagonal=dim > 2000, scale=1.0)


@register_optimizer("random")
def random_search(dim: int, popsize: int):
    """Gaussian random search around the start (the start itself first)."""
    return ng.families.RandomSearchMaker(sampler="gaussian", scale=1.0, middle_point=True)


class AskTellOptimizer:
    """Minimises over z in R^dim, starting at z = 0 with unit scale.

    name: a registered optimiser (:data:`OPTIMIZERS`): ``de`` (Differential Evolution, the paper's), ``cma``
    (CMA-ES; diagonal above 2000 dims) or ``random`` (random search around the start). popsize: candidates per
    generation. budget: candidates in all. seed: fixes every random draw.

    >>> opt = AskTellOptimizer("cma", dim=3, popsize=4, budget=8, seed=0)
    >>> zs = opt.ask()                                  # (popsize, dim)
    >>> zs.shape
    (4, 3)
    >>> opt.tell(zs, (zs ** 2).sum(axis=1))             # (popsize,) losses, one per candidate
    >>> opt.evaluations, opt.done, opt.ask().shape, opt.done
    (4, False, (4, 3), False)
    """

    def __init__(self, name: str, dim: int, popsize: int, budget: int, seed: int):
        if name not in OPTIMIZERS:
            raise CultureAlignError(f"unknown optimiser '{name}': use one of {', '.join(OPTIMIZERS)}")
        family = OPTIMIZERS[name](dim, popsize)
        if budget < popsize:
            raise CultureAlignError(f"--budget ({budget}) must be at least --popsize ({popsize})")
        self.name, self.dim, self.popsize, self.budget, self.seed = name, dim, popsize, budget, seed
        param = ng.p.Array(init=np.zeros(dim)).set_mutation(sigma=1.0)
        param.random_state = np.random.RandomState(seed)
        self._opt = family(parametrization=param, budget=budget, num_workers=popsize)
        self._pending: list = []

    def ask(self) -> np.ndarray:
        """The next generation ``(popsize, dim)`` (fewer when the budget runs out)."""
        n = min(self.popsize, self.budget - self._opt.num_tell)
        self._pending = [self._opt.ask() for _ in range(n)]
        return np.stack([c.value for c in self._pending]) if self._pending else np.zeros((0, self.dim))

    def tell(self, zs: np.ndarray, losses: np.ndarray) -> None:
        """Report ``(n,)`` losses for the ``(n, dim)`` candidates of the last :meth:`ask`."""
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
