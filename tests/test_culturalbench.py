"""CulturalBench-Hard: loading and country filters, the all-four-right question metric, real scoring."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from culturealign.culturalbench import (Judgement, culturalbench_metrics, judgement_rows, load_culturalbench,
                                        score_judgements)
from culturealign.errors import CultureAlignError
from culturealign.models import LoadedModel
from culturealign.softprompt import SoftPrompt


def test_load_all():
    items = load_culturalbench()
    assert len(items) == 4908
    counts = Counter(j.question_idx for j in items)
    assert len(counts) == 1227 and set(counts.values()) == {4}
    assert load_culturalbench("all") == items
    assert isinstance(items[0].answer, bool) and isinstance(items[0].question_idx, int)
    # every question has at least one correct option in this dataset
    assert all(any(j.answer for j in items if j.question_idx == q) for q in list(counts)[:50])


@pytest.mark.parametrize("query", ["CN", "China", "cHiNa", "CHN"])
def test_country_filter(query):
    items = load_culturalbench(query)
    assert len(items) == 236 and {j.country for j in items} == {"China"}


def test_country_names_that_differ_from_hofstede():
    # Hofstede says "U.S.A." / "Great Britain" / "Korea South"; the dataset says otherwise
    assert {j.country for j in load_culturalbench("USA")} == {"United States"}
    assert {j.country for j in load_culturalbench("Great Britain")} == {"United Kingdom"}
    assert {j.country for j in load_culturalbench("KR")} == {"South Korea"}
    assert {j.country for j in load_culturalbench("nepal")} == {"Nepal"}  # not in Hofstede's matrix


def test_limit_keeps_whole_questions():
    items = load_culturalbench("Japan", limit=3)
    counts = Counter(j.question_idx for j in items)
    assert len(items) == 12 and list(counts.values()) == [4, 4, 4]
    japan = sorted({j.question_idx for j in load_culturalbench("Japan")})
    assert sorted(counts) == japan[:3]
    assert len(load_culturalbench(limit=0)) == 0


def test_unknown_country_lists_choices():
    with pytest.raises(CultureAlignError, match="Closest: China") as err:
        load_culturalbench("Chinaa")
    assert "Zimbabwe" in str(err.value)
    with pytest.raises(CultureAlignError, match="no country 'Sweden'"):
        load_culturalbench("Sweden")  # a Hofstede country the benchmark lacks


def _j(q, answer, country="A"):
    return Judgement(q, f"question {q}", "option", answer, country)


def test_metrics_with_fixed_answers():
    judgements = [_j(0, True), _j(0, False), _j(0, False), _j(0, False),
                  _j(1, False), _j(1, True), _j(1, False), _j(1, False),
                  _j(2, True, "B"), _j(2, False, "B"), _j(2, False, "B"), _j(2, False, "B")]
    perfect = np.array([0.9 if j.answer else 0.1 for j in judgements])
    m = culturalbench_metrics(judgements, perfect)
    assert m["judgement_accuracy"] == 1.0 and m["question_accuracy"] == 1.0
    assert m["n_judgements"] == 12 and m["n_questions"] == 3
    # one wrong judgement in question 1 makes the whole question wrong
    p = perfect.copy()
    p[6] = 0.8
    m = culturalbench_metrics(judgements, p)
    assert m["judgement_accuracy"] == pytest.approx(11 / 12)
    assert m["question_accuracy"] == pytest.approx(2 / 3)
    assert m["per_country"]["A"] == {"judgement_accuracy": pytest.approx(7 / 8), "question_accuracy": 0.5,
                                     "n_questions": 2}
    assert m["per_country"]["B"]["question_accuracy"] == 1.0
    # exactly 0.5 is "False"; always answering False gets 3/4 of the judgements but no question
    m = culturalbench_metrics(judgements, np.full(12, 0.5))
    assert m["judgement_accuracy"] == 0.75 and m["question_accuracy"] == 0.0
    with pytest.raises(CultureAlignError):
        culturalbench_metrics(judgements, np.zeros(5))


def test_rows_carry_question_and_option(tiny_tokenizer):
    items = load_culturalbench("China", limit=1)
    rows = judgement_rows(tiny_tokenizer, items, system="You are a person from China.")
    assert len(rows) == 4 and [r.item for r in rows] == [0, 1, 2, 3]
    assert items[1].option in rows[1].head and rows[1].head.rstrip().endswith("Answer True or False.")
    assert "You are a person from China." in rows[0].head
    assert rows[0].tail.endswith("<|im_start|>assistant\n")


def test_real_scoring_with_tiny_model(tiny_model, tiny_tokenizer):
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    items = load_culturalbench("CN", limit=2)
    p = score_judgements(lm, items, batch_size=8)
    assert p.shape == (8,) and np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    # a strong soft prompt shifts the distribution, so it must really be fed to the model
    hidden = tiny_model.get_input_embeddings().weight.shape[1]
    soft = SoftPrompt(torch.randn(3, hidden, generator=torch.Generator().manual_seed(0)) * 5, "suffix", {})
    p_soft = score_judgements(lm, items, soft_prompt=soft, batch_size=8)
    assert p_soft.shape == (8,) and not np.allclose(p, p_soft)
    m = culturalbench_metrics(items, p)
    assert m["n_questions"] == 2 and 0 <= m["question_accuracy"] <= m["judgement_accuracy"] + 1e-12
