"""The planted-culture benchmark's data: its answer means must give each country's published indices exactly."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import planted_culture as planted  # noqa: E402  (an import error is a failure, not a skip)

from culturealign.constants import REFERENCE_COUNTRIES  # noqa: E402
from culturealign.instrument import Questionnaire  # noqa: E402
from culturealign.targets import lookup  # noqa: E402


def test_planted_means_reproduce_published_indices_under_reference_constants():
    q = Questionnaire.builtin()
    means = planted.planted_means(q)
    reference = np.mean([lookup(c).vector() for c in REFERENCE_COUNTRIES], axis=0)
    assert np.allclose(q.indices(means[None], reference), reference)  # untold: the reference mean
    for country in planted.PLANTED_COUNTRIES:
        mu = means[lookup(country).name]
        assert np.allclose(q.indices(mu, reference), lookup(country).vector(), atol=1e-9)
        assert 1.0 < mu.min() and mu.max() < 5.0
    countries = np.array([m for c, m in means.items() if c is not None])
    assert countries.std(axis=0).mean() > 0.4  # far enough apart for a small model to learn the country


def test_two_point_distribution_has_the_mean_and_two_neighbouring_answers():
    for mean in (1.05, 2.5, 3.0, 4.3, 4.95):
        p = planted.two_point(mean)
        assert p.sum() == pytest.approx(1) and p @ np.arange(1, 6) == pytest.approx(mean)
        assert np.count_nonzero(p) <= 2 and np.ptp(np.nonzero(p)[0]) <= 1


def test_country_questions_answer_with_the_country_token(tiny_tokenizer):
    tok = planted.make_tokenizer(extra_text=["You are a person from China."])
    names = [lookup(c).name for c in planted.PLANTED_COUNTRIES]
    tok.add_tokens(names)
    ids, answers = planted.country_questions(tok, Questionnaire.builtin())
    assert len(ids) == len(answers) == len(names) * len(planted.AUX_QUESTIONS)
    for seq, answer in zip(ids, answers):
        assert answer in seq  # the answer is the country token named in the system prompt
