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
from culturealign.config import PromptConfig
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
    assert cfg.SCHEDULES == ("constant", "cosine", "warmup") and cfg.LOSSES == ("l1", "huber")
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
    ("--schedule", "step", "schedule must be one of constant, cosine, warmup, not 'step'"),
])
def test_the_cli_prints_one_error_line(option, value, message):
    res = CliRunner().invoke(app, ["align", "--country", "CN", "--out", "unused", option, value])
    assert res.exit_code == 2 and message in res.output and res.output.count("error:") == 1


# ---- the constants: one spec, parsed from the old string form ---------------------------------------------------------
def test_constants_spec_parses_and_writes_the_old_strings(tmp_path):
    from pathlib import Path

    from culturealign.config import ConstantsKind, ConstantsSpec

    path = tmp_path / "c.json"
    path.write_text(json.dumps([0] * 6))
    for text, kind in [("zero", ConstantsKind.ZERO), ("anchored", ConstantsKind.ANCHORED), (str(path), ConstantsKind.FILE)]:
        spec = ConstantsSpec.parse(text)
        assert spec.kind is kind and str(spec) == text and spec == text and ConstantsSpec.parse(str(spec)) == spec
        assert spec.path == (text if kind is ConstantsKind.FILE else None)
        config = MeasureConfig(constants=text)
        assert config.constants == spec and isinstance(config.constants, ConstantsSpec)
        assert config.to_dict()["constants"] == text      # what older versions wrote and read, and --constants takes
        assert MeasureConfig(**config.to_dict()) == config
    assert MeasureConfig().constants.kind is ConstantsKind.ANCHORED                     # the default is unchanged
    assert ConstantsSpec.parse(Path(path)) == ConstantsSpec(ConstantsKind.FILE, str(path))
    assert ConstantsSpec.parse({"kind": "zero", "path": None}) == "zero"                # dataclasses.asdict's form
    assert {ConstantsSpec.parse("zero"): 1}["zero"] == 1                                 # hashes as its string


def test_an_old_run_json_config_keeps_its_constants(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps([0] * 6))
    for text in ("zero", "anchored", str(tmp_path / "c.json")):
        data = json.loads(to_json(AlignConfig(country="CN").to_dict()))
        data["measure"]["constants"] = text                 # as every version so far wrote it
        _, loaded = load_run(_run_folder(tmp_path / text.replace("/", "_"), data))
        assert loaded.measure.constants == text and str(loaded.measure.constants) == text
        assert f'"constants": {json.dumps(text)}' in to_json(loaded.to_dict())


@pytest.mark.parametrize("bad", ["no/such/file.json", "", "Anchored", 3, None, ["zero"]])
def test_bad_constants_name_the_field(bad):
    from culturealign.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        MeasureConfig(constants=bad)
    assert exc.value.fields == ("MeasureConfig.constants",) and str(exc.value).startswith("MeasureConfig.constants")


def test_a_spec_checks_its_path(tmp_path):
    from culturealign.config import ConstantsSpec
    from culturealign.errors import ConfigError

    with pytest.raises(ConfigError, match="ConstantsSpec.path: 'missing.json' is neither"):
        ConstantsSpec("file", "missing.json")
    with pytest.raises(ConfigError, match="ConstantsSpec.path is only for file constants"):
        ConstantsSpec("zero", str(tmp_path))


# ---- errors name fields in the library and flags through the CLI ------------------------------------------------------
@pytest.mark.parametrize("make_config,field,args,flag_message", [
    (lambda: AlignConfig(country="CN", steps=0), "AlignConfig.steps",
     ["align", "--country", "CN", "--out", "unused", "--steps", "0"], "--steps must be at least 1, not 0"),
    (lambda: AlignConfig(country="CN", lr=-1.0), "AlignConfig.lr",
     ["align", "--country", "CN", "--out", "unused", "--lr", "-1"], "--lr must be positive, not -1.0"),
    (lambda: AlignConfig(country="CN", max_grad_norm=-1.0), "AlignConfig.max_grad_norm",
     ["align", "--country", "CN", "--out", "unused", "--max-grad-norm", "-1"],
     "--max-grad-norm must be positive, not -1.0"),
    (lambda: AlignConfig(country="CN", patience=0), "AlignConfig.patience",
     ["align", "--country", "CN", "--out", "unused", "--patience", "0"], "--patience must be at least 1, not 0"),
    (lambda: SoftPromptConfig(n_tokens=0), "SoftPromptConfig.n_tokens",
     ["align", "--country", "CN", "--out", "unused", "--n-tokens", "0"], "--n-tokens must be at least 1, not 0"),
    (lambda: MeasureConfig(max_memory_mb=-5.0), "MeasureConfig.max_memory_mb",
     ["measure", "--country", "CN", "--max-memory", "-5"], "--max-memory must be a positive number of MB, not -5.0"),
    (lambda: MeasureConfig(constants="no/such.json"), "MeasureConfig.constants",
     ["measure", "--country", "CN", "--constants", "no/such.json"],
     "--constants: 'no/such.json' is neither zero, anchored nor an existing JSON file"),
    (lambda: MeasureConfig(dimensions="PDI,XYZ"), "MeasureConfig.dimensions",
     ["measure", "--country", "CN", "--dimensions", "PDI,XYZ"], "--dimensions must be a comma-separated subset"),
    (lambda: MeasureConfig(order="sideways"), "MeasureConfig.order",
     ["measure", "--country", "CN", "--order", "sideways"], "unknown option order: --order must be one of"),
])
def test_an_error_names_the_field_and_the_cli_the_flag(make_config, field, args, flag_message):
    from culturealign.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        make_config()
    assert exc.value.fields == (field,) and field in str(exc.value)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert flag_message in res.output and field not in res.output and res.output.count("error:") == 1


def test_indices_names_the_constants_flag(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([3.0] * 24))
    res = CliRunner().invoke(app, ["indices", "--means", str(tmp_path / "m.json"), "--constants", "no/such.json"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert "error: --constants: 'no/such.json' is neither zero, anchored nor an existing JSON file" in res.output


def test_reach_steps_are_checked_by_the_library_and_named_as_the_flag(tiny_model_dir):
    res = CliRunner().invoke(app, ["reach", "--steps", "0", "--model", str(tiny_model_dir), "--constants", "zero"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert "error: --steps must be at least 1, not 0" in res.output


def test_the_flag_table_names_real_flags_and_covers_the_fields():
    import typer.main

    from culturealign.cli import FLAGS

    def options(command):
        for sub in getattr(command, "commands", {}).values():
            yield from options(sub)
        for param in command.params:
            yield from param.opts

    flags = set(options(typer.main.get_command(app)))
    assert set(FLAGS.values()) <= flags, set(FLAGS.values()) - flags
    from dataclasses import fields

    settable = {f"{cls.__name__}.{f.name}" for cls in (MeasureConfig, SoftPromptConfig, AlignConfig)
                for f in fields(cls)}
    without_a_flag = {"MeasureConfig.scoring", "MeasureConfig.mas_weight",  # --cat-mas-weight is a switch
                      "AlignConfig.soft", "AlignConfig.measure"}
    assert settable - set(FLAGS) == without_a_flag


def test_a_config_error_keeps_its_fields_across_processes():
    import pickle

    from culturealign.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        AlignConfig(country="CN", steps=0)
    again = pickle.loads(pickle.dumps(exc.value))
    assert type(again) is ConfigError and again.fields == ("AlignConfig.steps",) and str(again) == str(exc.value)


def test_settings_the_optimiser_does_not_use_are_refused(tmp_path, tiny_model_dir):
    """--budget/--popsize under adam and --steps/--lr/... under cma would be silently ignored: one clear error,
    in the library (AlignConfig.check_applies, called by align and run_experiment) and on the command line."""
    from culturealign.errors import ConfigError

    assert AlignConfig(country="CN").unused_settings() == []
    assert AlignConfig(country="CN", optimizer="cma", popsize=4, budget=8).unused_settings() == []
    assert AlignConfig(country="CN", optimizer="adam", budget=32, popsize=8).unused_settings() == [
        "AlignConfig.popsize", "AlignConfig.budget"]
    assert AlignConfig(country="CN", optimizer="adam", soft=SoftPromptConfig(space="full")).unused_settings() == [
        "SoftPromptConfig.space"]
    with pytest.raises(ConfigError, match="AlignConfig.steps, AlignConfig.lr, AlignConfig.max_grad_norm do not "
                                          "apply to optimizer cma"):
        AlignConfig(country="CN", optimizer="cma", steps=5, lr=0.1, max_grad_norm=None).check_applies()
    runner = CliRunner()
    common = ["align", "--country", "US", "--model", str(tiny_model_dir), "--constants", "zero"]
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "a"), "--budget", "32", "--popsize", "8"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "--popsize, --budget do not apply to optimizer adam (only a black-box optimiser" in res.output
    assert not (tmp_path / "a").exists()
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "b"), "--optimizer", "de", "--steps", "5",
                              "--schedule", "constant"])
    assert res.exit_code == 2 and "--steps, --schedule do not apply to optimizer de (only --optimizer adam" in res.output
    res = runner.invoke(app, ["experiment", "--countries", "US", "--out", str(tmp_path / "e"), "--model",
                              str(tiny_model_dir), "--constants", "zero", "--optimizer", "cma", "--lr", "0.5"])
    assert res.exit_code == 2 and "--lr does not apply to optimizer cma" in res.output, res.output
