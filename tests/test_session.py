"""Session: the model loaded once, constants resolved only when asked."""
import culturealign.measure as measure
import culturealign.session as session
from culturealign.config import MeasureConfig


def _count_survey_answers(monkeypatch) -> list:
    from culturealign.survey import Survey

    calls, answer = [], Survey.answer
    monkeypatch.setattr(Survey, "answer", lambda self, *a, **kw: (calls.append(self.country), answer(self, *a, **kw))[1])
    return calls


def test_a_session_runs_the_model_for_constants_only_when_resolution_is_asked(tiny_model, tiny_tokenizer, tmp_path,
                                                                             monkeypatch):
    import json

    import pytest

    from culturealign.errors import CultureAlignError
    from culturealign.models import LoadedModel
    from culturealign.targets import lookup

    monkeypatch.setenv("CULTUREALIGN_CACHE", str(tmp_path / "cache"))
    calls = _count_survey_answers(monkeypatch)
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    (tmp_path / "c.json").write_text(json.dumps([1, 2, 3, 4, 5, 6]))
    # zero and a file's constants: read when the session is made, with no model call
    zero = session.Session(MeasureConfig(constants="zero", order="forward"), lm=lm)
    from_file = session.Session(MeasureConfig(constants=str(tmp_path / "c.json"), order="forward"), lm=lm)
    assert zero.constants.kind == "zero" and from_file.constants.values.tolist() == [1, 2, 3, 4, 5, 6]
    assert zero.resolve_constants() is zero.constants and calls == []
    # anchored: nothing measured, nothing cached, and a clear error until resolve_constants()
    anchored = session.Session(MeasureConfig(constants="anchored", order="forward"), lm=lm)
    for use in (lambda: anchored.constants, lambda: anchored.constants_for(lookup("CN")),
                lambda: anchored.objective(lookup("CN")), lambda: anchored.measure(lookup("CN"), "naive")):
        with pytest.raises(CultureAlignError, match=r"call session.resolve_constants\(\) first"):
            use()
    assert calls == [] and not (tmp_path / "cache" / "constants").exists()
    fitted = anchored.resolve_constants()
    assert len(calls) == 8 and len(list((tmp_path / "cache" / "constants").iterdir())) == 1  # one persona each
    assert anchored.resolve_constants() is fitted is anchored.constants and len(calls) == 8  # resolved once
    assert anchored.measure(lookup("CN"), "naive")["constants"]["left_out"] == "China"


def test_the_commands_resolve_the_constants_themselves(tiny_model, tiny_tokenizer, tmp_path, monkeypatch):
    from culturealign.comparison import compare
    from culturealign.models import LoadedModel
    from culturealign.targets import lookup

    monkeypatch.setenv("CULTUREALIGN_CACHE", str(tmp_path / "cache"))
    lm = LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny")
    cfg = MeasureConfig(constants="anchored", order="forward")
    result = measure.measure_countries(cfg, ["CN"], "naive", session=session.Session(cfg, lm=lm))
    assert result["constants"]["kind"] == "anchored" and result["results"][0]["constants"]["left_out"] == "China"
    assert compare(session.Session(cfg, lm=lm), lookup("US"), methods=())["constants"]["left_out"] == "U.S.A."
