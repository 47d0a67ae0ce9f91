"""Typed configuration: every choice is a str Enum, validated in __post_init__, written to JSON as its value."""
import json

import pytest
from typer.testing import CliRunner

from culturealign import config as cfg
from culturealign.cli import app
from culturealign.config import AlignConfig, MeasureConfig, SoftPromptConfig
from culturealign.errors import CultureAlignError
from culturealign.instrument import DIMENSIONS
from culturealign.io import to_json
from culturealign.prompts import PromptConfig
from culturealign.runs import load_run

# (config class, field, enum, default value, another valid value)
CHOICES = [
    (MeasureConfig, "labels", cfg.Labels, "letters", "digits"),
    (MeasureConfig, "order", cfg.Order, "both", "reverse"),
    (MeasureConfig, "answer_mode", cfg.AnswerMode, "distribution", "sample"),
    (MeasureConfig, "scoring", cfg.Scoring, "auto", "next_token"),
    (SoftPromptConfig, "placement", cfg.Placement, "prefix", "suffix"),
    (SoftPromptConfig, "init", cfg.Init, "text", "vocab"),
    (SoftPromptConfig, "space", cfg.Space, "subspace", "full"),
    (PromptConfig, "style", cfg.PromptStyle, "naive", "icl"),
    (PromptConfig, "labels", cfg.Labels, "letters", "digits"),
    (PromptConfig, "order", cfg.Order, "both", "forward"),
    (AlignConfig, "prompt", cfg.PromptStyle, "naive", "persona"),
    (AlignConfig, "optimizer", cfg.Optimizer, "adam", "cma"),
    (AlignConfig, "schedule", cfg.Schedule, "cosine", "constant"),
    (AlignConfig, "loss", cfg.Loss, "huber", "l1"),
]


def make(cls, **kw):
    return cls(country="CN", **kw) if cls is AlignConfig else cls(**kw)


@pytest.mark.parametrize("cls,name,enum,default,other", CHOICES)
def test_a_choice_is_stored_as_its_enum(cls, name, enum, default, other):
    value = getattr(make(cls), name)
    assert type(value) is enum and value == default and f"{value}" == str(value) == default  # defaults unchanged
    value = getattr(make(cls, **{name: other}), name)
    assert type(value) is enum and value == other and value is enum(other)
    assert getattr(make(cls, **{name: enum(other)}), name) is enum(other)


@pytest.mark.parametrize("cls,name,enum,default,other", CHOICES)
@pytest.mark.parametrize("bad", ["nonsense", "", 3, None, ["a"]])
def test_a_bad_choice_names_the_field(cls, name, enum, default, other, bad):
    with pytest.raises(CultureAlignError) as exc:
        make(cls, **{name: bad})
    assert f"{name} must be one of {', '.join(m.value for m in enum)}, not {bad!r}" in str(exc.value)


def test_the_old_tuples_are_derived_from_the_enums():
    assert cfg.INITS == ("text", "vocab", "random") and cfg.SPACES == ("full", "subspace")
    assert cfg.BLACK_BOX_OPTIMIZERS == ("cma", "de", "random") and cfg.GRADIENT_OPTIMIZERS == ("adam",)
    assert cfg.SCHEDULES == ("constant", "cosine") and cfg.LOSSES == ("l1", "huber")
    assert cfg.ANSWER_MODES == ("distribution", "sample") and cfg.SCORINGS == ("auto", "next_token", "sequence")
    from culturealign.prompts import LABELS, ORDERS, STYLES

    assert STYLES == ("naive", "persona", "icl") and ORDERS == ("forward", "reverse", "both")
    assert LABELS[cfg.Labels.LETTERS] == ["A", "B", "C", "D", "E"]  # an Enum member finds its value's entry


def test_json_round_trip_keeps_plain_strings_and_rebuilds_enums():
    config = AlignConfig(country="CN", optimizer="de", loss="huber",
                         soft=SoftPromptConfig(placement="suffix", init="random", space="full"),
                         measure=MeasureConfig(labels="digits", order="forward", scoring="sequence"))
    text = to_json(config.to_dict())
    data = json.loads(text)
    assert data["optimizer"] == "de" and data["soft"]["placement"] == "suffix" and data["measure"]["order"] == "forward"
    assert '"placement": "suffix"' in text and "Placement" not in text
    again = AlignConfig.from_dict(data)
    assert again == config and again.soft.placement is cfg.Placement.SUFFIX and again.measure.scoring is cfg.Scoring.SEQUENCE
    assert to_json(again.to_dict()) == text


def _run_folder(folder, config_dict):
    folder.mkdir()
    record = {"config": config_dict, "status": "done",
              "constants": {"kind": "zero", "values": {d: 0.0 for d in DIMENSIONS}}}
    (folder / "run.json").write_text(to_json(record))
    return folder


def test_load_run_round_trips_and_names_a_bad_choice(tmp_path):
    config = AlignConfig(country="CN", soft=SoftPromptConfig(placement="suffix"))
    _, loaded = load_run(_run_folder(tmp_path / "good", config.to_dict()))
    assert loaded == config and loaded.soft.placement is cfg.Placement.SUFFIX
    data = json.loads(to_json(config.to_dict()))
    data["soft"]["placement"] = "middle"
    with pytest.raises(CultureAlignError, match="placement must be one of prefix, suffix, not 'middle'"):
        load_run(_run_folder(tmp_path / "bad", data))


@pytest.mark.parametrize("option,value,message", [
    ("--placement", "middle", "placement must be one of prefix, suffix, not 'middle'"),
    ("--optimizer", "sgd", "optimizer must be one of cma, de, random, adam, not 'sgd'"),
    ("--labels", "roman", "labels must be one of digits, letters, not 'roman'"),
    ("--schedule", "step", "schedule must be one of constant, cosine, not 'step'"),
])
def test_the_cli_prints_one_error_line(option, value, message):
    res = CliRunner().invoke(app, ["align", "--country", "CN", "--out", "unused", option, value])
    assert res.exit_code == 2 and message in res.output and res.output.count("error:") == 1
