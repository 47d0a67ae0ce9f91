"""The scoring-backend seam: a lazy registry, backend options, and a backend without gradients."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from culturealign import backends
from culturealign.backends import BACKENDS, get_backend, load_backend, parse_backend_args, register_backend
from culturealign.cli import app
from culturealign.config import MeasureConfig

TESTS = str(Path(__file__).resolve().parent)  # the tiny test model (toymodels.py) lives here
from culturealign.errors import CultureAlignError

runner = CliRunner()

# a backend that wraps the Hugging Face one but gives no gradients (as vLLM): written to a module of its own, so
# that registering it by "module:Class" can be seen to import nothing until it is chosen
NO_GRAD_MODULE = textwrap.dedent('''
    from culturealign.backends.hf import HFBackend

    class NoGradBackend(HFBackend):
        name = "nograd"
        supports_gradients = False
''')


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def nograd(tmp_path, monkeypatch):
    (tmp_path / "nograd_backend.py").write_text(NO_GRAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nograd_backend", raising=False)
    monkeypatch.setitem(BACKENDS, "nograd", None)   # undone after the test
    register_backend("nograd", "nograd_backend:NoGradBackend")
    return "nograd"


def test_choosing_hf_imports_no_other_engine():
    code = ("import sys\n"
            "from culturealign.config import MeasureConfig\n"
            "MeasureConfig(backend='vllm')\n"   # a name is checked without importing anything
            "assert 'torch' not in sys.modules and 'culturealign.backends.hf' not in sys.modules, 'eager import'\n"
            "from culturealign.backends import load_backend\n"
            f"sys.path.insert(0, {TESTS!r})\n"
            "from toymodels import make_model, make_tokenizer\n"
            "from culturealign.models import LoadedModel\n"
            "from culturealign.backends import get_backend\n"
            "tok = make_tokenizer()\n"
            "backend = get_backend('hf')(LoadedModel(make_model(tok), tok, 'tiny', 'tiny'))\n"
            "assert backend.name == 'hf' and backend.supports_gradients\n"
            "assert 'vllm' not in sys.modules and 'culturealign.backends.vllm' not in sys.modules, 'vllm imported'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(CultureAlignError, match=r"unknown backend 'onnx': use one of .*hf.*vllm"):
        get_backend("onnx")
    with pytest.raises(CultureAlignError, match="unknown backend 'onnx'"):
        MeasureConfig(backend="onnx")
    res = run("measure", "--country", "CN", "--backend", "onnx")
    assert res.exit_code == 2 and "unknown backend 'onnx'" in res.output and res.output.count("error:") == 1


def test_a_missing_engine_says_how_to_install_it(monkeypatch, tiny_model_dir):
    # vllm (and our module that imports it) cannot be imported here, whether or not it is installed
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.delitem(sys.modules, "culturealign.backends.vllm", raising=False)
    monkeypatch.setitem(BACKENDS, "vllm", "culturealign.backends.vllm:VLLMBackend")
    with pytest.raises(CultureAlignError, match=r"pip install 'culturealign\[vllm\]'.*setup-vllm.sh"):
        load_backend("vllm", str(tiny_model_dir))   # the module imports; the engine is checked when a model loads
    res = run("measure", "--country", "CN", "--model", tiny_model_dir, "--backend", "vllm", "--constants", "zero")
    assert res.exit_code == 2 and "pip install 'culturealign[vllm]'" in res.output
    assert res.output.count("error:") == 1 and "Traceback" not in res.output


def test_a_backend_registered_by_module_and_class_is_found_when_chosen(nograd, tiny_model_dir):
    assert "nograd_backend" not in sys.modules          # registered, not imported
    cls = get_backend(nograd)
    assert cls.__name__ == "NoGradBackend" and "nograd_backend" in sys.modules
    backend = load_backend(nograd, str(tiny_model_dir))
    assert backend.hidden_size == 32 and not backend.supports_gradients
    assert backend.provenance()["path"] == str(tiny_model_dir)
    with pytest.raises(CultureAlignError, match="register 'module:Class'"):
        register_backend("broken", "no_colon_here")


def test_align_with_gradients_needs_a_backend_that_has_them(nograd, tiny_model_dir, tmp_path):
    common = ["align", "--country", "CN", "--model", tiny_model_dir, "--backend", nograd, "--constants", "zero",
              "--order", "forward", "--n-tokens", "2", "--json"]
    res = run(*common, "--optimizer", "adam", "--out", tmp_path / "adam")
    assert res.exit_code == 2 and res.output.count("error:") == 1
    assert "--optimizer adam needs gradients" in res.output and "--optimizer cma, de or random" in res.output
    assert not (tmp_path / "adam").exists()           # refused before anything was written
    res = run("reach", "--model", tiny_model_dir, "--backend", nograd, "--constants", "zero", "--steps", "1",
              "--dimensions", "PDI")
    assert res.exit_code == 2 and "reach needs gradients" in res.output
    # a black-box optimiser runs on it, and the run records the backend
    res = run(*common, "--optimizer", "cma", "--budget", "4", "--popsize", "2", "--out", tmp_path / "cma")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["status"] == "finished" and record["evaluations"] == 4
    assert record["config"]["measure"]["backend"] == nograd and record["model"]["backend"] == "nograd"


def test_backend_args_parse_and_reach_the_constructor(tiny_model_dir):
    assert parse_backend_args("a=1,b=0.5,c=true,d=False,e=none,f=text, g = x y ") == {
        "a": 1, "b": 0.5, "c": True, "d": False, "e": None, "f": "text", "g": "x y"}
    assert parse_backend_args("") == {} and parse_backend_args(None) == {}
    for bad, why in (("a", "is not key=value"), ("=1", "is not key=value"), ("a=1,a=2", "given twice"),
                     ("1a=2", "is not key=value")):
        with pytest.raises(CultureAlignError, match=why):
            parse_backend_args(bad)
    base = ["measure", "--country", "CN", "--model", tiny_model_dir, "--constants", "zero", "--order", "forward"]
    res = run(*base, "--backend-args", "attn_implementation")
    assert res.exit_code == 2 and "--backend-args: 'attn_implementation' is not key=value" in res.output
    res = run(*base, "--backend-args", "tensor_parallel_size=2")
    assert res.exit_code == 2 and "backend 'hf' takes no option(s) tensor_parallel_size" in res.output
    res = run(*base, "--backend-args", "attn_implementation=eager", "--json")
    assert res.exit_code == 0, res.output
    config = json.loads(res.stdout)["provenance"]["config"]
    assert config["backend"] == "hf" and config["backend_args"] == {"attn_implementation": "eager"}


def test_backend_args_in_a_config_are_plain_values():
    assert MeasureConfig(backend_args={"tensor_parallel_size": 2}).backend_args == {"tensor_parallel_size": 2}
    for bad in ({"x": [1]}, {"not a name": 1}, ["x"]):
        with pytest.raises(CultureAlignError, match="backend_args must map option names"):
            MeasureConfig(backend_args=bad)
    # another backend does not inherit the options of the last one
    cfg = MeasureConfig(backend_args={"attn_implementation": "eager"})
    assert cfg.updated(backend="vllm").backend_args == {} and cfg.updated(dtype="bfloat16").backend_args == cfg.backend_args


def test_the_interface_is_what_the_rest_uses(tiny_model, tiny_tokenizer):
    import torch

    from culturealign.backends.base import Backend, Scorer, as_backend
    from culturealign.models import LoadedModel
    from culturealign.config import PromptConfig
    from culturealign.prompts import build_rows
    from culturealign.instrument import Questionnaire

    backend = as_backend(LoadedModel(tiny_model, tiny_tokenizer, "tiny", "tiny"))
    assert isinstance(backend, Backend) and as_backend(backend) is backend
    ids = tiny_tokenizer("You are a person", add_special_tokens=False)["input_ids"]
    assert torch.equal(backend.embed(ids), backend.embedding_matrix()[ids].float())
    rows = build_rows(Questionnaire.builtin(), tiny_tokenizer, PromptConfig("naive", order="forward"))[:3]
    scorer = backend.scorer(rows, ["1", "2", "3", "4", "5"], batch_size=2)
    assert isinstance(scorer, Scorer) and scorer.n_rows == 3
    assert scorer.score(torch.zeros(4, 2, 32), "suffix").probs.shape == (4, 3, 5)
    assert isinstance(backend.generate(None, "Hello", max_new_tokens=2), str)
    assert set(backend.provenance()) >= {"backend", "id", "path", "hidden_size", "dtype", "device"}
    from culturealign.config import DEFAULT_BACKEND

    assert DEFAULT_BACKEND == "hf" and DEFAULT_BACKEND in backends.BACKENDS
