"""The optimiser registry: built-ins found by name with unchanged behaviour; a new one is one registered factory."""
import nevergrad as ng
import numpy as np
import pytest

from culturealign.config import BLACK_BOX_OPTIMIZERS, AlignConfig
from culturealign.errors import CultureAlignError
from culturealign.optimizers import OPTIMIZERS, AskTellOptimizer, register_optimizer


def _run(opt, generations=3):
    seen = []
    for _ in range(generations):
        zs = opt.ask()
        seen.append(zs)
        opt.tell(zs, np.abs(zs - 0.5).sum(axis=1))
    return np.concatenate(seen)


def test_the_built_ins_are_registered():
    assert set(OPTIMIZERS) == set(BLACK_BOX_OPTIMIZERS) == {"cma", "de", "random"}


@pytest.mark.parametrize("name,family", [
    ("de", lambda dim, pop: ng.families.DifferentialEvolution(crossover="twopoints", popsize=pop)),
    ("cma", lambda dim, pop: ng.families.ParametrizedCMA(popsize=pop, diagonal=dim > 2000, scale=1.0)),
    ("random", lambda dim, pop: ng.families.RandomSearchMaker(sampler="gaussian", scale=1.0, middle_point=True)),
])
def test_a_built_in_is_the_same_nevergrad_optimiser(name, family):
    """Same settings and seed as nevergrad used directly: the same candidates."""
    param = ng.p.Array(init=np.zeros(5)).set_mutation(sigma=1.0)
    param.random_state = np.random.RandomState(7)
    direct = family(5, 6)(parametrization=param, budget=18, num_workers=6)
    expected = []
    for _ in range(3):
        cands = [direct.ask() for _ in range(6)]
        expected.append(np.stack([c.value for c in cands]))
        for c in cands:
            direct.tell(c, float(np.abs(c.value - 0.5).sum()))
    np.testing.assert_array_equal(_run(AskTellOptimizer(name, 5, 6, 18, seed=7)), np.concatenate(expected))


def test_unknown_names_and_bad_settings_are_clear():
    with pytest.raises(CultureAlignError, match="unknown optimiser 'pso': use one of de, cma, random"):
        AskTellOptimizer("pso", 3, 4, 8, 0)
    with pytest.raises(CultureAlignError, match="needs --popsize of at least 4"):
        AskTellOptimizer("de", 3, 2, 1, 0)  # the optimiser's own check comes before the budget check
    with pytest.raises(CultureAlignError, match="--budget"):
        AskTellOptimizer("cma", 3, 4, 2, 0)
    with pytest.raises(CultureAlignError, match="unknown optimizer"):
        AlignConfig(country="CN", optimizer="pso")


def test_registering_an_optimiser_is_one_function_and_one_line(monkeypatch):
    monkeypatch.setattr("culturealign.optimizers.OPTIMIZERS", dict(OPTIMIZERS))  # undone after the test

    @register_optimizer("one_plus_one")
    def one_plus_one(dim, popsize):
        return ng.optimizers.OnePlusOne

    import culturealign.optimizers as optimizers

    assert optimizers.OPTIMIZERS["one_plus_one"] is one_plus_one and "one_plus_one" not in OPTIMIZERS
    zs = _run(AskTellOptimizer("one_plus_one", 4, 3, 9, seed=1))
    assert zs.shape == (9, 4) and np.isfinite(zs).all()
    config = AlignConfig(country="CN", optimizer="one_plus_one")
    assert config.optimizer == "one_plus_one" and not config.gradient
    assert AlignConfig.from_dict(config.to_dict()) == config


def test_align_runs_a_registered_optimiser(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    """The "Extending" example (docs/extending.md) end to end: a registered optimiser runs a whole alignment, and its run
    folder loads back."""
    from culturealign.align import align
    from culturealign.config import MeasureConfig, SoftPromptConfig
    from culturealign.session import Session
    from culturealign.models import LoadedModel
    from culturealign.runs import load_run

    monkeypatch.setattr("culturealign.optimizers.OPTIMIZERS", dict(OPTIMIZERS))

    @register_optimizer("pso")
    def particle_swarm(dim, popsize):
        return ng.families.ConfPSO(popsize=popsize)

    measure = MeasureConfig(model="tiny", constants="zero", order="forward")
    session = Session(measure, lm=LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    config = AlignConfig(country="CN", optimizer="pso", popsize=4, budget=8, measure=measure,
                         soft=SoftPromptConfig(n_tokens=2, placement="suffix", subspace_dim=4))
    record = align(config, tmp_path / "run", session=session)
    assert record["status"] == "finished" and record["evaluations"] == 8 and record["config"]["optimizer"] == "pso"
    assert load_run(tmp_path / "run")[1] == config
