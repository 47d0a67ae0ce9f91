"""Scoring mechanics on a tiny random Llama: distributions, batching, padding, caching, soft prompts."""
import numpy as np
import pytest
import torch

from culturealign.errors import CultureAlignError
from culturealign.instrument import Questionnaire
from culturealign.models import LoadedModel
from culturealign.config import PromptConfig
from culturealign.prompts import build_rows
from culturealign.backends.hf import SurveyScorer
from culturealign.survey import Survey
from culturealign.targets import lookup


@pytest.fixture(scope="module")
def rows(tiny_tokenizer):
    return build_rows(Questionnaire.builtin(), tiny_tokenizer, PromptConfig(style="persona", order="both"), lookup("CN"))


@pytest.fixture(scope="module")
def soft():
    return torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(1)) * 0.5


def test_distributions_sum_to_one_and_mass_is_a_fraction(tiny_model, tiny_tokenizer, rows, soft):
    res = SurveyScorer(tiny_model, tiny_tokenizer, rows).score(soft, "prefix")
    assert res.probs.shape == (3, 48, 5)
    np.testing.assert_allclose(res.probs.sum(-1), 1.0, atol=1e-6)
    assert np.all((res.mass > 0) & (res.mass < 1))


@pytest.mark.parametrize("placement", ["prefix", "suffix"])
def test_cached_and_uncached_paths_agree(tiny_model, tiny_tokenizer, rows, soft, placement):
    cached = SurveyScorer(tiny_model, tiny_tokenizer, rows, use_cache=True).score(soft, placement)
    uncached = SurveyScorer(tiny_model, tiny_tokenizer, rows, use_cache=False).score(soft, placement)
    np.testing.assert_allclose(cached.probs, uncached.probs, atol=1e-5)
    np.testing.assert_allclose(cached.mass, uncached.mass, atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_batching_and_padding_do_not_change_results(tiny_model, tiny_tokenizer, rows, soft, use_cache):
    # batch size 1 has no padding at all; 7 and 200 mix rows of different lengths in one padded batch
    results = [SurveyScorer(tiny_model, tiny_tokenizer, rows, batch_size=b, use_cache=use_cache).score(soft, "suffix").probs
               for b in (1, 7, 200)]
    assert len({len(ids) for ids in SurveyScorer(tiny_model, tiny_tokenizer, rows).head_ids}) > 1  # padding happens
    for other in results[1:]:
        np.testing.assert_allclose(results[0], other, atol=1e-5)


def test_candidates_are_scored_independently(tiny_model, tiny_tokenizer, rows, soft):
    scorer = SurveyScorer(tiny_model, tiny_tokenizer, rows, batch_size=10)
    together = scorer.score(soft, "prefix").probs
    alone = scorer.score(soft[1:2], "prefix").probs
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_soft_prompt_changes_the_output(tiny_model, tiny_tokenizer, rows, soft):
    scorer = SurveyScorer(tiny_model, tiny_tokenizer, rows)
    plain = scorer.score(None).probs[0]
    for placement in ("prefix", "suffix"):
        assert np.abs(scorer.score(soft[:1], placement).probs[0] - plain).max() > 1e-3


def _plain_model_probs(model, tokenizer, rows) -> np.ndarray:
    """Option probabilities of the plain model, one whole row per forward pass (no scorer, no cache, no padding);
    head and tail are tokenised apart, as a soft prompt may go between them."""
    option_ids = SurveyScorer(model, tokenizer, rows[:1]).option_ids
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    out = []
    for row in rows:
        ids = encode(row.head) + encode(row.tail)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        out.append(torch.softmax(logits[option_ids], -1).numpy())
    return np.array(out)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("placement", ["prefix", "suffix"])
def test_zero_length_soft_prompt_equals_plain_model(tiny_model, tiny_tokenizer, rows, placement, use_cache):
    plain = _plain_model_probs(tiny_model, tiny_tokenizer, rows)
    scorer = SurveyScorer(tiny_model, tiny_tokenizer, rows, batch_size=7, use_cache=use_cache)
    np.testing.assert_allclose(scorer.score(torch.zeros(1, 0, 32), placement).probs[0], plain, atol=1e-5)
    np.testing.assert_allclose(scorer.score(None).probs[0], plain, atol=1e-5)


def test_sequence_scoring_agrees_with_next_token_for_single_token_labels(tiny_model, tiny_tokenizer, rows, soft):
    fast = SurveyScorer(tiny_model, tiny_tokenizer, rows[:6])
    seq = SurveyScorer(tiny_model, tiny_tokenizer, rows[:6], scoring="sequence", batch_size=8)
    assert fast.mode == "next_token" and seq.mode == "sequence"
    np.testing.assert_allclose(seq.score(soft, "prefix").probs, fast.score(soft, "prefix").probs, atol=1e-5)


def test_multi_token_labels_fall_back_to_sequence_scoring(tiny_model, tiny_tokenizer, rows):
    labels = ["strongly agree", "agree", "undecided", "disagree", "strongly disagree"]
    scorer = SurveyScorer(tiny_model, tiny_tokenizer, rows[:3], labels=labels)
    assert scorer.mode == "sequence"
    probs = scorer.score(None).probs
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert np.isnan(scorer.score(None).mass).all()


def test_wrong_hidden_size_is_a_clear_error(tiny_model, tiny_tokenizer, rows):
    with pytest.raises(CultureAlignError, match=r"does not fit this model: need \(candidates, n_tokens, 32\)"):
        SurveyScorer(tiny_model, tiny_tokenizer, rows).score(torch.zeros(2, 4, 64))


def test_reverse_order_is_mapped_back_to_answer_order(tiny_model, tiny_tokenizer):
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    q, cn = Questionnaire.builtin(), lookup("CN")
    both = Survey(lm, q, PromptConfig("persona", labels="digits", order="both"), cn).answer()
    fwd = Survey(lm, q, PromptConfig("persona", labels="digits", order="forward"), cn).answer()
    rev_survey = Survey(lm, q, PromptConfig("persona", labels="digits", order="reverse"), cn)
    # the reversed rows list the options 5..1 under the labels 1..5, the forward rows 1..5
    fwd_rows = Survey(lm, q, PromptConfig("persona", labels="digits", order="forward"), cn).rows
    for item, rev_row, fwd_row in zip(q.items, rev_survey.rows, fwd_rows):
        assert rev_row.reversed and not fwd_row.reversed and rev_row.item == fwd_row.item == item.id
        listed_rev = "\n".join(f"{k}. {option}" for k, option in zip("12345", item.options[::-1]))
        listed_fwd = "\n".join(f"{k}. {option}" for k, option in zip("12345", item.options))
        assert listed_rev in rev_row.head and listed_fwd not in rev_row.head
        assert listed_fwd in fwd_row.head
        positions = [rev_row.head.index(f". {option}\n") for option in item.options[:4]]
        assert positions == sorted(positions, reverse=True)  # option 1 comes last
    listed = rev_survey.scorer.score(None).probs[0]
    np.testing.assert_allclose(both.probs_by_order[0, 0], fwd.probs[0], atol=1e-6)
    # listed position 1 under reversed options is answer 5
    np.testing.assert_allclose(both.probs_by_order[0, 1], listed[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(both.probs[0], (fwd.probs[0] + listed[:, ::-1]) / 2, atol=1e-6)
    assert both.order_correlation.shape == (1,) and fwd.order_correlation is None
    np.testing.assert_allclose(both.expected[0], both.probs[0] @ np.arange(1, 6), atol=1e-9)


def test_sample_mode_counts_parsed_and_unparsed_replies(tiny_model, tiny_tokenizer):
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    survey = Survey(lm, Questionnaire.builtin(), PromptConfig("naive", order="forward"))
    a = survey.sample(n_samples=4, seed=0, max_new_tokens=3)
    b = survey.sample(n_samples=4, seed=0, max_new_tokens=3)
    parsed = 4 - a.unparsed[0, 0]
    assert a.unparsed.shape == (1, 1, 24) and a.unparsed.sum() > 0  # a random model often says no digit
    assert np.all((parsed == 0) | np.isclose(np.nan_to_num(a.probs_by_order[0, 0]).sum(-1), 1.0))
    np.testing.assert_array_equal(a.unparsed, b.unparsed)  # seeded


def test_memory_limit_shrinks_batches_without_changing_results(tiny_model, tiny_tokenizer, rows, soft):
    free = SurveyScorer(tiny_model, tiny_tokenizer, rows, batch_size=48)
    per_seq = free.sequence_bytes(cached=120, new=10)
    limited = SurveyScorer(tiny_model, tiny_tokenizer, rows, batch_size=48, max_memory_mb=3 * per_seq / 2 ** 20)
    assert free.batch_for(120, 10) == 48 and limited.batch_for(120, 10) == 3
    np.testing.assert_allclose(limited.score(soft, "suffix").probs, free.score(soft, "suffix").probs, atol=1e-5)
    with pytest.raises(CultureAlignError, match="too small for one sequence"):
        SurveyScorer(tiny_model, tiny_tokenizer, rows, max_memory_mb=1e-6).score(soft, "suffix")


@pytest.mark.parametrize("text,labels,expected", [
    ("B", "letters", 1), ("(C) undecided", "letters", 2), ("E.", "letters", 4),
    ("A person like me would choose D", "letters", 3), ("A", "letters", 0), ("I would say A or B", "letters", None),
    ("Both B and C", "letters", None), ("no idea", "letters", None),
    ("3", "digits", 2), ("My answer: 4", "digits", 3), ("1 or 2", "digits", None), ("12", "digits", None),
])
def test_parse_answer(text, labels, expected):
    from culturealign.prompts import LABELS
    from culturealign.survey import parse_answer

    assert parse_answer(text, LABELS[labels]) == expected


def test_a_tail_ending_in_a_space_scores_the_label_with_its_space():
    """"Answer: " + "A" is tokenised "Answer", ":", " A": the label is scored as " A" right after "Answer:", not as
    " A" after a lone space token (which no text produces)."""
    from culturealign.prompts import LABELS
    from toymodels import make_model, make_tokenizer

    tok = make_tokenizer(extra_text=["Answer: A. Answer: B. Answer: C. Answer: D. Answer: E."] * 20, vocab_size=600)
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert len(encode(" A")) == 1 and encode("Answer: ")[-1] == encode(" ")[0]   # the artefact's precondition
    model = make_model(tok)
    q = Questionnaire.builtin()
    for labels, prefix in [("letters", "Answer: "), ("digits", "Answer: "), ("letters", "")]:
        rows = build_rows(q, tok, PromptConfig("naive", labels=labels, answer_prefix=prefix, order="forward"))
        scorer = SurveyScorer(model, tok, rows, LABELS[labels])
        assert scorer.mode == "next_token"
        for r, row in enumerate(rows):
            assert scorer.head_ids[r] == encode(row.head)
            for k, label in enumerate(LABELS[labels]):   # what is scored is the tokenised text "tail + label"
                assert scorer.tail_ids[r] + [scorer.option_ids[k]] == encode(row.tail + label), (labels, prefix)
    letters = build_rows(q, tok, PromptConfig("naive", labels="letters", answer_prefix="Answer: ", order="forward"))
    scorer = SurveyScorer(model, tok, letters, LABELS["letters"])
    assert [tok.convert_ids_to_tokens(i) for i in scorer.option_ids] == ["ĠA", "ĠB", "ĠC", "ĠD", "ĠE"]
    expected = []
    for row in letters[:3]:                                # the model's own next-token distribution after "Answer:"
        ids = torch.tensor([encode(row.head + row.tail.rstrip(" "))])
        logits = model(input_ids=ids).logits[0, -1]
        expected.append(torch.softmax(logits[scorer.option_ids], -1).detach().numpy())
    np.testing.assert_allclose(scorer.score().probs[0, :3], np.array(expected), atol=1e-5)
