"""The planted-culture benchmark's data: held-out countries, simulated respondents whose answers give each country's
published indices, conditioning on the six scores in text (never a name) in every position, and honest runs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import optimizers as bench  # noqa: E402  (an import error is a failure, not a skip)
import planted_culture as planted  # noqa: E402

from culturealign.instrument import DIMENSIONS, Questionnaire  # noqa: E402
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel  # noqa: E402
from culturealign.targets import all_countries, lookup  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return planted.PlantedWorld.build(0, n_synthetic=40)


def test_split_holds_out_the_paper_countries_and_trains_on_the_rest():
    train, held = planted.split(0)
    six = [c.name for c in all_countries() if all(d in c.scores for d in DIMENSIONS)]
    assert {lookup(c).name for c in planted.PAPER_COUNTRIES} <= set(held)
    assert len(held) == len(planted.PAPER_COUNTRIES) + planted.N_EXTRA_HELD_OUT
    assert not set(train) & set(held) and sorted(train + held) == sorted(six)
    assert len(train) >= 50
    assert planted.split(0) == (train, held) and planted.split(1)[1] != held  # seeded, and the seed matters


def test_item_means_give_every_countrys_published_indices_under_the_constants(world):
    q = Questionnaire.builtin()
    rm = world.respondent_model
    assert np.allclose(world.constants, np.mean([lookup(c).vector() for c in world.train], axis=0))
    everyone = np.array([lookup(c).vector() for c in world.train + world.held_out])
    means = rm.means(everyone)
    assert np.allclose(q.indices(means, world.constants), everyone, atol=1e-9)
    assert means.min() >= 1.1 - 1e-9 and means.max() <= 4.9 + 1e-9
    assert means.std(axis=0).mean() > 0.3          # countries differ clearly on every item (null-space spread)
    untold = rm.means(world.constants)[0]           # the mean profile: item baselines, indices exactly C
    assert np.allclose(untold, 3.0 + rm.baseline) and untold.std() > 0.1
    assert np.allclose(q.indices(untold, world.constants), world.constants)
    shift = rm.means(world.constants + np.array([20, 0, 0, 0, 0, 0]))[0] - untold   # the response style moves
    assert np.ptp(shift - shift.mean()) > 0 and abs(shift.mean()) > 0.01           # every item a little


def test_respondents_answer_1_to_5_with_the_models_item_means(world):
    scores = lookup("China").vector()
    answers = world.respondent_model.respondents(scores, n=300, seed=3)
    assert answers.shape == (300, 24) and answers.min() >= 1 and answers.max() <= 5
    assert np.abs(answers.mean(axis=0) - world.respondent_model.means(scores)[0]).max() <= 1 / 600 + 1e-12
    dist = planted.distribution(answers)
    assert np.allclose(dist.sum(axis=1), 1) and (dist > 0).sum(axis=1).max() >= 2   # real spread of answers
    again = world.respondent_model.respondents(scores, n=300, seed=4)
    assert not np.array_equal(answers, again)       # a sample, not a formula
    q = Questionnaire.builtin()
    floor = np.abs(q.indices(dist @ np.arange(1, 6), world.constants) - scores).sum()
    assert floor < 1.0                              # the respondents' own indices are within a point of published


def test_synthetic_profiles_stay_away_from_held_out_countries(world):
    held = np.array([lookup(c).vector() for c in world.held_out])
    assert len(world.synthetic) == 40
    for s in world.synthetic:
        assert np.abs(held - s).sum(axis=1).min() >= planted.SYNTHETIC_MIN_L1
        assert np.array_equal(s, np.rint(s))


def test_scores_text_states_the_six_scores_and_no_name():
    china = lookup("China")
    assert planted.scores_text(china.vector()) == "PDI 80, IDV 20, MAS 66, UAI 30, LTO 87, IVR 24"
    assert china.name not in planted.NEUTRAL_TEXT and not any(ch.isdigit() for ch in planted.NEUTRAL_TEXT)


def test_conditioning_text_stands_in_each_position(tiny_tokenizer):
    q = Questionnaire.builtin()
    text = "PDI 80, IDV 20, MAS 66, UAI 30, LTO 87, IVR 24"
    untold = planted.conditioned_rows(q, tiny_tokenizer, None)
    assert len(untold) == 24 and all(text not in r.head for r in untold)
    for position in planted.POSITIONS:
        rows = planted.conditioned_rows(q, tiny_tokenizer, text, position)
        assert [r.item for r in rows] == list(range(1, 25))
        for row, plain in zip(rows, untold):
            head = row.head
            assert head.count(text) == 1 and row.tail == plain.tail
            user_start = head.rindex("<|im_start|>user")
            where = head.index(text)
            if position == "system":
                assert where < user_start
            elif position == "before":
                assert where > user_start and head.index(q.items[row.item - 1].text) > where
            else:  # after the item: the end of the user's text, where a suffix soft prompt is placed
                assert head.endswith(text) and head.index(q.items[row.item - 1].text) < where
    with pytest.raises(ValueError):
        planted.conditioned_rows(q, tiny_tokenizer, text, "middle")


@pytest.fixture(scope="module")
def planted_tokenizer():
    tok = planted.make_tokenizer(extra_text=[planted.NEUTRAL_TEXT] * 3)
    first = len(tok)
    tok.add_tokens(planted.score_tokens())
    return tok, first


def test_a_filled_survey_template_is_the_tokenised_survey_text(planted_tokenizer):
    tok, first = planted_tokenizer
    templates = planted.SurveyTemplates(tok, first)
    q = Questionnaire.builtin()
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for position, scores in [("system", lookup("Germany").vector()), ("before", [0, 120, 7, 99, 60, 13]),
                             ("after", [104, 27, 100, 3, 51, 28]), ("untold", None)]:
        ids, mask, _ = templates.survey(position, scores)
        text = None if scores is None else planted.scores_text(scores)
        rows = planted.conditioned_rows(q, tok, text, "system" if scores is None else position)
        for r, row in enumerate(rows):
            assert ids[r][mask[r] == 1].tolist() == encode(row.head) + encode(row.tail)


def test_training_rows_never_show_a_held_out_country(world):
    rng = np.random.default_rng(0)
    targets = {name: np.full((24, 5), 0.2) + i for i, (name, _) in enumerate(world.profiles())}
    untold = np.full((24, 5), -1.0)
    held = np.array([lookup(c).vector() for c in world.held_out])
    names = {tuple(s): name for name, s in world.profiles()}
    positions, items, scores, target = planted.draw_rows(world, rng, targets, untold, 600, planted.DEFAULT_TRAINING)
    kinds = {"untold": 0, "country": 0, "synthetic": 0}
    for position, item, profile, t in zip(positions, items, scores, target):
        if profile is None:
            kinds["untold"] += 1
            assert position == "untold" and np.array_equal(t, untold[item])
            continue
        name = names[tuple(profile)]                     # a training profile, with its own target row
        assert np.array_equal(t, targets[name][item])
        kinds["synthetic" if name.startswith("synthetic-") else "country"] += 1
        assert name not in world.held_out and np.abs(held - profile).sum(axis=1).min() > 0
    assert all(positions.count(p) > 120 for p in planted.POSITIONS) and len(set(items)) == 24
    assert 10 < kinds["untold"] < 60 and 120 < kinds["country"] < 240 and kinds["synthetic"] > 300
    untold_target = world.untold_target(0)
    assert np.allclose(untold_target @ np.arange(1, 6), 3.0 + world.respondent_model.baseline, atol=1e-3)


def test_template_rows_mix_positions_items_and_profiles(planted_tokenizer):
    tok, first = planted_tokenizer
    templates = planted.SurveyTemplates(tok, first)
    china, germany = lookup("China").vector(), lookup("Germany").vector()
    ids, mask, _ = templates.rows(["after", "untold", "system"], [4, 0, 23], [china, None, germany])
    for r, (position, item, scores) in enumerate([("after", 4, china), ("untold", 0, None), ("system", 23, germany)]):
        alone, alone_mask, _ = templates.survey(position, scores)
        assert ids[r][mask[r] == 1].tolist() == alone[item][alone_mask[item] == 1].tolist()


def test_each_stated_score_is_one_token_with_an_embedding_linear_in_the_score():
    tok = planted.make_tokenizer()
    tok.add_tokens(planted.score_tokens())
    text = planted.scores_text(lookup("Slovak Rep").vector())        # PDI 104, MAS 100: three digits too
    assert tok.tokenize(text)[::3] == text.split(", ")
    assert len(planted.score_tokens()) == 6 * 121
    base, slope = torch.randn(6, 8), torch.randn(6, 8)
    rows = planted.score_embedding_rows(base, slope).view(6, 121, 8)
    assert torch.allclose(rows[2, 60], base[2]) and torch.allclose(rows[2, 90] - rows[2, 60], slope[2])
    assert torch.allclose(rows[:, 1:] - rows[:, :-1], (slope / 30)[:, None].expand(6, 120, 8), atol=1e-5)


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    from toymodels import make_model, make_tokenizer

    tok = make_tokenizer()
    folder = tmp_path_factory.mktemp("planted-like")
    (folder / "constants.json").write_text('{"PDI": 60, "IDV": 45, "MAS": 50, "UAI": 65, "LTO": 50, "IVR": 50}')
    lm = LoadedModel(make_model(tok, hidden=32), tok, "tiny", str(folder))
    return planted.planted_session(lm)


@pytest.mark.parametrize("init", ["neutral", "vocab", "random"])
def test_runs_share_their_start_report_its_loss_and_draw_independently(tiny_session, tmp_path, init):
    session = tiny_session
    assert session.config.order == planted.ORDER and session.constants.kind == "file"
    country = "China"
    starts, first = {}, {}
    for key in ("cma", "de-full", "random"):
        res = bench.run_one(session, country, bench.METHODS[key], "prefix", init, 32, 0, tmp_path / key)
        starts[key] = res["start"]
        assert res["fe"][-1] == 32 and len(res["best"]) == 2
        first[key] = res["best"][0]
    assert len(set(np.round(list(starts.values()), 9))) == 1   # every method starts from the same point
    # the start loss is the loss of z = 0 measured independently
    from culturealign.softprompt import initial_embeddings

    soft = bench.soft_config("prefix", init, "subspace")
    p0 = initial_embeddings(soft, session.backend, session.backend.tokenizer, "China", 0)
    expected = session.objective(lookup(country)).loss(session.survey("naive", lookup(country)).answer(
        p0[None], "prefix").expected)[0]
    assert starts["cma"] == pytest.approx(float(expected))
    res = bench.run_one(session, country, bench.METHODS["adam"], "prefix", init, 9, 0, tmp_path / "adam")
    assert res["start"] == pytest.approx(float(expected)) and res["fe"].tolist() == [3.0, 6.0, 9.0]
    if init == "neutral":
        assert res["best"][0] == pytest.approx(float(expected))  # Adam's first step evaluates the start itself


def test_black_box_methods_of_one_seed_draw_different_first_generations(tiny_session, tmp_path):
    from culturealign.config import AlignConfig
    from culturealign.align import make_alignment
    zs = {}
    for key in ("de-full", "random"):
        m = bench.METHODS[key]
        soft = bench.soft_config("prefix", "neutral", "full")
        cfg = AlignConfig(country="China", optimizer=m.optimizer, popsize=16, budget=32,
                          seed=1000 * 0 + bench.OPTIMIZER_NUMBER[m.optimizer], soft=soft, measure=tiny_session.config)
        zs[key] = make_alignment(cfg, tmp_path / key, session=tiny_session).optimizer.ask()
    assert not np.allclose(zs["de-full"][1:], zs["random"][1:])


def test_benchmarks_refuse_training_countries():
    train, held = planted.split(0)
    assert all(c not in train for c in held)
    assert "China" in held and "Germany" in train


def test_loss_at_reads_the_curve_and_falls_back_to_the_start():
    curve = {"start": 100.0, "fe": np.array([16.0, 32.0]), "wall": np.array([1.0, 2.0]), "best": np.array([80.0, 60.0])}
    assert bench.loss_at(curve, 0, "fe") == 100.0
    assert bench.loss_at(curve, 20, "fe") == 80.0 and bench.loss_at(curve, 32, "fe") == 60.0
    assert bench.loss_at(curve, 1.5, "wall") == 80.0


def test_recipe_key_changes_with_every_setting():
    _, base = planted.recipe_key()
    assert planted.recipe_key()[1] == base
    for change in ({"steps": 10}, {"hidden": 32}, {"lr": 1e-3}, {"seed": 1}):
        assert planted.recipe_key(**change)[1] != base

