"""Anchored constants: leave-one-out for an anchor country, the reference set recorded, and a cache key that
covers the weights, their dtype and device (not only the model's path)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from culturealign import constants as consts
from culturealign.constants import REFERENCE_COUNTRIES
from culturealign.comparison import compare
from culturealign.config import MeasureConfig
from culturealign.session import Session
from culturealign.models import LoadedModel, weights_fingerprint
from culturealign.targets import lookup


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    # fake fits below must never reach the cache other tests read
    monkeypatch.setenv("CULTUREALIGN_CACHE", str(tmp_path / "cache"))


def _session(model, tokenizer) -> Session:
    return Session(MeasureConfig(model="tiny", constants="anchored", order="forward"),
                   lm=LoadedModel(model, tokenizer, "tiny", "tiny"))


def _fake_raw(session: Session, calls: list) -> None:
    """Raw persona indices without the model: 10 on every dimension, 30 for China."""
    def raw(name):
        calls.append(name)
        return np.full(6, 30.0 if name == "China" else 10.0)
    session._raw_persona_indices = raw


def test_anchor_country_gets_constants_fitted_without_it(tiny_model, tiny_tokenizer):
    session, calls = _session(tiny_model, tiny_tokenizer), []
    _fake_raw(session, calls)
    full = session.resolve_constants()
    assert len(calls) == 8 and full.to_dict()["references"] == [lookup(c).name for c in REFERENCE_COUNTRIES]
    # published PDI of the eight: 40 80 77 35 54 69 35 93 (sum 483); LTO: 26 87 51 83 88 44 51 81 (sum 511)
    assert full.values[0] == pytest.approx((483 - 7 * 10 - 30) / 8)          # 47.875
    assert full.values[4] == pytest.approx((511 - 7 * 10 - 30) / 8)          # 51.375
    china = session.constants_for(lookup("CN"))
    assert china.values[0] == pytest.approx((483 - 80 - 7 * 10) / 7)          # 47.571...: China and its raw 30 out
    assert china.values[4] == pytest.approx((511 - 87 - 7 * 10) / 7)          # 50.571...
    record = china.to_dict()
    assert record["left_out"] == "China" and "China" not in record["references"] and len(record["references"]) == 7
    assert set(record["raw_indices"]) == set(record["references"])
    assert len(calls) == 8  # from the fit's raw indices: nothing measured again
    # a country that is not a reference keeps the full fit, and says so
    france = session.constants_for(lookup("France"))
    np.testing.assert_array_equal(france.values, full.values)
    assert france.to_dict()["left_out"] is None and len(france.to_dict()["references"]) == 8
    # the objective, the measurement record and the comparison use the leave-one-out constants
    objective = session.objective(lookup("CN"))
    np.testing.assert_array_equal(objective.constants, china.values)
    assert objective.reference_mean_loss() == pytest.approx(np.abs(china.values - lookup("CN").vector()).sum())
    rec = session.measure(lookup("CN"), "naive")
    assert rec["constants"]["left_out"] == "China" and rec["constants"]["values"]["PDI"] == pytest.approx(333 / 7)
    assert session.measure(lookup("France"), "naive")["constants"]["left_out"] is None
    result = compare(session, lookup("CN"), methods=())
    assert result["constants"]["left_out"] == "China"
    ref_row = next(r for r in result["rows"] if r["method"] == "reference mean")
    assert ref_row["indices"]["PDI"] == pytest.approx(333 / 7) and ref_row["loss"] == pytest.approx(
        objective.reference_mean_loss())


def test_leave_one_out_from_a_cached_fit(tiny_model, tiny_tokenizer):
    first, calls = _session(tiny_model, tiny_tokenizer), []
    _fake_raw(first, calls)
    first.resolve_constants()
    again = _session(tiny_model, tiny_tokenizer)
    _fake_raw(again, calls)
    assert "cache" in again.resolve_constants().details and len(calls) == 8  # read from the cache, not measured
    np.testing.assert_allclose(again.constants_for(lookup("US")).values,
                               first.constants_for(lookup("US")).values, rtol=0, atol=0)
    assert again.constants_for(lookup("US")).to_dict()["left_out"] == "U.S.A."


def test_leave_one_out_leaves_other_constants_alone():
    fixed = consts.Constants(np.arange(6.0), "anchored", {"from_run": "runs/cn"})  # a run's constants: no raw indices
    assert consts.leave_one_out(fixed, "China") is fixed
    assert consts.leave_one_out(consts.zero(), "China").kind == "zero"


def _perturbed(model, change):
    other = copy.deepcopy(model)
    with torch.no_grad():
        change(other)
    return other


def test_cache_key_covers_weights_dtype_and_device(tiny_model, tiny_tokenizer, monkeypatch):
    keys = []
    monkeypatch.setattr(consts, "anchored", lambda raw_for, key, **kw: (keys.append(key), consts.zero())[1])
    models = {
        "original": tiny_model,
        "same weights": copy.deepcopy(tiny_model),
        "other weights": _perturbed(tiny_model, lambda m: m.model.norm.weight.add_(1e-3)),
        "float64": _perturbed(tiny_model, lambda m: m.double()),
    }
    for model in models.values():
        _session(model, tiny_tokenizer).resolve_constants()
    key = dict(zip(models, keys))
    assert key["original"] == key["same weights"]
    assert key["original"]["dtype"] == "float32" and key["original"]["device"] == "cpu"
    assert key["original"]["model"] == key["other weights"]["model"] == "tiny"  # one path ...
    assert key["original"]["weights"] != key["other weights"]["weights"]        # ... two sets of weights
    assert key["float64"]["dtype"] == "float64" and key["float64"]["weights"] != key["original"]["weights"]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == 3


def test_other_weights_at_the_same_path_are_refitted(tiny_model, tiny_tokenizer):
    calls = []
    first = _session(tiny_model, tiny_tokenizer)
    _fake_raw(first, calls)
    path = first.resolve_constants().details["cache"]
    other = _session(_perturbed(tiny_model, lambda m: m.model.embed_tokens.weight.mul_(1.01)), tiny_tokenizer)
    _fake_raw(other, calls)
    assert other.resolve_constants().details["cache"] != path and len(calls) == 16  # fitted again, cached apart


def test_weights_fingerprint_samples_every_tensor(tiny_model):
    base = weights_fingerprint(tiny_model)
    assert base == weights_fingerprint(copy.deepcopy(tiny_model))
    for name, _ in list(tiny_model.named_parameters())[:: 5]:
        other = copy.deepcopy(tiny_model)
        with torch.no_grad():
            other.get_parameter(name).add_(0.01)
        assert weights_fingerprint(other) != base, name
