"""Scoring backends: the engines that run a model, behind one interface (:class:`~culturealign.backends.base.Backend`).

A backend is registered by name, lazily, as lm-evaluation-harness registers its models: the registry holds a
``"module:Class"`` string, and the module (with its engine: transformers, vLLM, ...) is imported only when that
backend is chosen. This module imports neither torch nor any engine, so configs can check a name cheaply.

>>> sorted(BACKENDS)[:2]
['hf', 'vllm']
>>> get_backend("hf").__name__
'HFBackend'
>>> get_backend("onnx")
Traceback (most recent call last):
culturealign.errors.CultureAlignError: unknown backend 'onnx': use one of hf, vllm (or register one with culturealign.backends.register_backend)
"""
from __future__ import annotations

import inspect

from ..errors import CultureAlignError
from ..registry import Registry

#: how to install the engine of a built-in backend, named in the error when its import fails
INSTALL_HINTS = {"vllm": "on a CUDA machine pip install 'culturealign[vllm]'; on CPU its own environment, "
                          "bash scripts/setup-vllm.sh, then .venv-vllm/bin/culturealign (or use --backend hf)"}

#: name -> "module:Class" (not imported yet) or the class itself (registered directly, or imported once)
BACKENDS = Registry("backend", "culturealign.backends.register_backend", {
    "hf": "culturealign.backends.hf:HFBackend",
    "vllm": "culturealign.backends.vllm:VLLMBackend",
}, INSTALL_HINTS)


def register_backend(name: str, target: str | type | None = None):
    """Register a backend under ``name``: ``target`` is a ``"module:Class"`` string (imported only when the
    backend is chosen) or the class itself. Without ``target`` it returns a class decorator::

        register_backend("onnx", "my_package.onnx_backend:OnnxBackend")   # lazy

        @register_backend("onnx")                                          # or on the class itself
        class OnnxBackend(Backend): ...
    """
    return BACKENDS.register(name, target)


def check_backend_name(name) -> None:
    """A clear error unless ``name`` is a registered backend (nothing is imported)."""
    BACKENDS.check(name)


def get_backend(name: str) -> type:
    """The backend class registered as ``name``, importing its module now (and only now)."""
    return BACKENDS.load(name)


def check_backend_args(name: str, cls: type, backend_args: dict) -> None:
    """A clear error for an option the backend's constructor does not take (before any model loads)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the engine checks its own options (vLLM's LLM(**kwargs))
    known = [p for p in params if p not in ("self", "model", "device", "dtype")]
    unknown = sorted(k for k in backend_args if k not in known)
    if unknown:
        raise CultureAlignError(f"backend '{name}' takes no option(s) {', '.join(unknown)}: --backend-args "
                                f"takes {', '.join(known) or 'none'}")


def load_backend(name: str, model: str, device: str | None = "cpu", dtype: str | None = "float32",
                 **backend_args):
    """Load ``model`` (``"default"``, a hub id or a folder) in backend ``name``; ``backend_args`` go to its
    constructor (``--backend-args``)."""
    cls = get_backend(name)
    check_backend_args(name, cls, backend_args)
    return cls(model, device=device, dtype=dtype, **backend_args)


def parse_backend_args(text: str | None) -> dict:
    """``"k=v,k=v"`` (lm-evaluation-harness's ``--model_args``) -> dict; values become int, float, bool or None
    where they read as one, else stay strings.

    >>> parse_backend_args("tensor_parallel_size=2,gpu_memory_utilization=0.8,enforce_eager=true,quantization=awq")
    {'tensor_parallel_size': 2, 'gpu_memory_utilization': 0.8, 'enforce_eager': True, 'quantization': 'awq'}
    >>> parse_backend_args("gpu_memory_utilization")
    Traceback (most recent call last):
    culturealign.errors.CultureAlignError: --backend-args: 'gpu_memory_utilization' is not key=value (write k=v,k=v, e.g. tensor_parallel_size=2,gpu_memory_utilization=0.8)
    """
    out: dict = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise CultureAlignError(f"--backend-args: {part.strip()!r:.60} is not key=value (write k=v,k=v, e.g. "
                                    "tensor_parallel_size=2,gpu_memory_utilization=0.8)")
        if key in out:
            raise CultureAlignError(f"--backend-args: {key} is given twice")
        out[key] = _parse_value(value.strip())
    return out


def _parse_value(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value

