"""Soft prompts: continuous input embeddings, their initialisation, search spaces and files.

A soft prompt is a tensor ``(n_tokens, hidden)`` placed ``prefix`` (before every token, as PEFT prompt tuning
does) or ``suffix`` (after the item text). On disk (a folder):

- ``soft_prompt.safetensors``: tensor ``embeddings`` ``(n_tokens, hidden)`` in float32; the header metadata holds
  the provenance (country, target, constants, loss, seed, model, placement) as strings;
- ``soft_prompt.json``: the same provenance as JSON;
- for ``prefix`` placement also a PEFT prompt-tuning adapter (``adapter_config.json`` +
  ``adapter_model.safetensors`` with tensor ``prompt_embeddings``) that ``PeftModel.from_pretrained`` loads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from .config import SoftPromptConfig
from .errors import CultureAlignError
from .io import atomic_write_bytes, atomic_write_json
from .prompts import STYLES

SOFT_PROMPT_FILE = "soft_prompt.safetensors"
SOFT_PROMPT_JSON = "soft_prompt.json"


PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _embeddings(source):
    """``source`` as something with ``embed(ids)`` and ``embedding_matrix()``: a backend, or
    :class:`~culturealign.backends.hf.EmbeddingLookup` over a model's input-embedding module."""
    if hasattr(source, "embed") and hasattr(source, "embedding_matrix"):
        return source
    raise CultureAlignError(f"{type(source).__name__} has no embed()/embedding_matrix(): pass a backend, or "
                            "culturealign.backends.hf.EmbeddingLookup(model.get_input_embeddings())")


def embedding_scale(source) -> float:
    """The standard deviation sigma of the input embeddings as the model sees them (a model that scales its
    embeddings, as Gemma does by sqrt(hidden), has its rows scaled). ``source``: a backend (or an embedding
    lookup)."""
    return float(_embeddings(source).embedding_matrix().float().std())


def initial_embeddings(config: SoftPromptConfig, source, tokenizer, country_name: str | None,
                       seed: int) -> torch.Tensor:
    """The starting point p0 ``(n_tokens, hidden)``, float32 on the CPU. ``source``: a backend (or an
    :class:`~culturealign.backends.hf.EmbeddingLookup`); ``tokenizer``: its tokenizer. A text start with ``seed`` > 0 adds Gaussian noise of
    ``config.init_noise`` embedding SDs per coordinate, so that seeds are different starts (seed 0: the text)."""
    lookup = _embeddings(source)
    gen = torch.Generator().manual_seed(seed)
    if config.init == "random":
        return torch.randn(config.n_tokens, lookup.embedding_matrix().shape[1], generator=gen) * embedding_scale(lookup)
    if config.init == "vocab":
        vocab = lookup.embedding_matrix().shape[0]
        return lookup.embed(torch.randint(0, vocab, (config.n_tokens,), generator=gen))
    text = config.init_text or (f"You are a person from {country_name}." if country_name else "You are a person.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise CultureAlignError(f"--init-text {text!r} has no tokens")
    ids = (ids * (config.n_tokens // len(ids) + 1))[: config.n_tokens]
    p0 = lookup.embed(torch.tensor(ids))
    if seed and config.init_noise:
        p0 = p0 + torch.randn(p0.shape, generator=gen) * (config.init_noise * embedding_scale(lookup))
    return p0


class PromptSpace:
    """Maps search vectors z ``(P, dim)`` to soft prompts ``(P, n_tokens, hidden)``: p = p0 + scale * sigma * B z.

    B is the identity (``full``, dim = n_tokens * hidden) or a fixed random matrix with N(0, 1/dim) entries
    (``subspace``), so that z ~ N(0, 1) gives perturbations at ``scale`` times the embedding scale sigma.

    >>> from culturealign.config import SoftPromptConfig
    >>> p0 = torch.zeros(4, 32)                         # (n_tokens, hidden): the initial soft prompt
    >>> space = PromptSpace(p0, sigma=0.5, config=SoftPromptConfig(n_tokens=4, subspace_dim=16), seed=0)
    >>> space.dim                                       # the search dimension
    16
    >>> space(np.zeros((3, 16))).shape                  # (P, dim) -> (P, n_tokens, hidden)
    torch.Size([3, 4, 32])
    >>> PromptSpace(p0, 0.5, SoftPromptConfig(n_tokens=4, space="full"), seed=0).dim   # n_tokens * hidden
    128
    """

    def __init__(self, p0: torch.Tensor, sigma: float, config: SoftPromptConfig, seed: int):
        self.p0, self.config = p0.float(), config
        self.step = float(config.scale * sigma)
        n = p0.numel()
        if config.space == "full":
            self.dim, self.matrix = n, None
        else:
            gen = torch.Generator().manual_seed(seed + 7919)
            self.dim = config.subspace_dim
            self.matrix = torch.randn(n, self.dim, generator=gen) / np.sqrt(self.dim)

    def __call__(self, z: np.ndarray) -> torch.Tensor:
        z = torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)
        delta = z if self.matrix is None else z @ self.matrix.T
        return self.p0.unsqueeze(0) + self.step * delta.view(z.shape[0], *self.p0.shape)


@dataclass
class SoftPrompt:
    """A learned soft prompt with its placement and provenance; :meth:`save` writes a folder that :meth:`load` reads
    (and, for ``prefix`` placement, a PEFT prompt-tuning adapter).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     SoftPrompt(torch.ones(4, 32), "prefix", {"country": "China"}).save(folder)
    ...     loaded = SoftPrompt.load(folder, expected_hidden_size=32)
    >>> loaded.embeddings.shape, loaded.placement, loaded.metadata   # (n_tokens, hidden)
    (torch.Size([4, 32]), 'prefix', {'country': 'China'})
    """

    embeddings: torch.Tensor          # (n_tokens, hidden)
    placement: str
    metadata: dict

    def save(self, folder: str | Path, base_model: str | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        emb = self.embeddings.detach().float().cpu().contiguous()
        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in
                {**self.metadata, "placement": self.placement, "format": "culturealign-soft-prompt/1"}.items()}
        atomic_write_bytes(folder / SOFT_PROMPT_FILE, save({"embeddings": emb}, metadata=meta))
        atomic_write_json(folder / SOFT_PROMPT_JSON, {**self.metadata, "placement": self.placement,
                                                      "n_tokens": emb.shape[0], "hidden_size": emb.shape[1]})
        if self.placement == "prefix":
            self._save_peft(folder, emb, meta, base_model)

    def _save_peft(self, folder: Path, emb: torch.Tensor, meta: dict, base_model: str | None) -> None:
        from peft import PromptTuningConfig

        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=emb.shape[0], token_dim=emb.shape[1],
                                    num_transformer_submodules=1, base_model_name_or_path=base_model,
                                    inference_mode=True)
        atomic_write_json(folder / "adapter_config.json", config.to_dict())
        atomic_write_bytes(folder / "adapter_model.safetensors",
                           save({"prompt_embeddings": emb}, metadata={"format": "pt", **meta}))

    def check_fits(self, hidden_size: int, where: str | Path = "") -> "SoftPrompt":
        """This prompt, after checking that its width is the model's ``hidden_size`` (a clear error naming the
        model it was learned for when not)."""
        if self.embeddings.shape[1] != hidden_size:
            raise CultureAlignError(f"soft prompt {where} has hidden size {self.embeddings.shape[1]} but the model "
                                    f"has {hidden_size}: it was learned for another model "
                                    f"({self.metadata.get('model', 'unknown')}); pass the matching --model")
        return self

    @classmethod
    def load(cls, folder: str | Path, expected_hidden_size: int | None = None) -> "SoftPrompt":
        """Load a soft prompt folder (or file); a wrong hidden size or a corrupt file is a clear error.

        The file must hold a 2-D floating-point tensor ``embeddings`` (at least one token, finite values; returned
        as float32) and string metadata with a ``placement`` of prefix or suffix (prefix if absent).
        """
        path = Path(folder)
        file = _prompt_file(path)
        if not file.is_file():
            raise CultureAlignError(f"no soft prompt at {path}: expected a folder written by `culturealign align` "
                                    f"(with {SOFT_PROMPT_FILE})")
        redo = "re-run `culturealign align` or restore the file"
        try:
            from safetensors import safe_open

            with safe_open(file, "pt") as f:
                meta = dict(f.metadata() or {})
                names = list(f.keys())
                emb = f.get_tensor("embeddings") if "embeddings" in names else None
        except Exception as exc:  # noqa: BLE001  safetensors, torch and the OS raise many types for a bad file
            if isinstance(exc, (KeyboardInterrupt, MemoryError)):
                raise
            raise CultureAlignError(f"soft prompt file {file} is corrupt or not a safetensors file "
                                    f"({type(exc).__name__}: {str(exc)[:200]}); {redo}") from None
        if emb is None or emb.dim() != 2:
            raise CultureAlignError(f"soft prompt file {file} has no 2-D tensor 'embeddings' "
                                    f"(tensors: {', '.join(names)[:120] or 'none'}); {redo}")
        if not emb.is_floating_point():
            raise CultureAlignError(f"soft prompt file {file}: 'embeddings' holds {emb.dtype}, not floating-point "
                                    f"numbers; {redo}")
        if emb.shape[0] < 1 or emb.shape[1] < 1:
            raise CultureAlignError(f"soft prompt file {file}: 'embeddings' has shape {tuple(emb.shape)}; it needs at "
                                    f"least one token of at least one dimension; {redo}")
        emb = emb.float()
        if not torch.isfinite(emb).all():
            raise CultureAlignError(f"soft prompt file {file}: 'embeddings' holds NaN or infinite values; {redo}")
        if expected_hidden_size is not None:
            cls(emb, "prefix", {"model": meta.get("model", "unknown")}).check_fits(expected_hidden_size, file)
        placement = meta.pop("placement", "prefix")
        if placement not in ("prefix", "suffix"):
            raise CultureAlignError(f"soft prompt file {file}: unknown placement {placement!r:.40} in its metadata "
                                    f"(prefix or suffix); {redo}")
        meta.pop("format", None)
        decoded = {}
        for k, v in meta.items():
            if k in _TEXT_METADATA:
                decoded[k] = v  # saved as text: "123" stays a model name, not a number
                continue
            try:
                decoded[k] = json.loads(v)
            except (ValueError, RecursionError):
                decoded[k] = v
        style = decoded.get("prompt", "naive")
        if style not in STYLES:
            raise CultureAlignError(f"soft prompt file {file}: unknown prompt style {style!r:.40} in its metadata "
                                    f"(one of {', '.join(STYLES)}); {redo}")
        return cls(emb, placement, decoded)


def load_soft_prompt(path: str | Path, backend) -> SoftPrompt:
    """The soft prompt at ``path`` (a run folder or file), checked against ``backend``'s hidden size: a prompt
    learned for another model is a clear error naming it."""
    return SoftPrompt.load(path, expected_hidden_size=backend.hidden_size)


def load_with_model(path: str | Path | None, model: str | None = None, device: str | None = "cpu",
                    dtype: str | None = "float32", backend: str = "hf", backend_args: dict | None = None):
    """A soft prompt (read once) and the model to use it with: ``model`` if given, else the model the prompt was
    learned for, else the default, loaded in ``backend``. Returns ``(backend, SoftPrompt | None)``; a prompt that
    does not fit the model is a clear error."""
    from .backends import load_backend

    prompt = SoftPrompt.load(path) if path else None
    chosen = model or (prompt.metadata.get("model") if prompt else None) or "default"
    loaded = load_backend(backend, chosen, device, dtype, **(backend_args or {}))
    if prompt is not None:
        prompt.check_fits(loaded.hidden_size, _prompt_file(Path(path)))
    return loaded, prompt


def _prompt_file(path: Path) -> Path:
    return path / SOFT_PROMPT_FILE if path.is_dir() else path


#: Metadata saved as plain strings (``SoftPrompt.save`` writes a string value as it is).
_TEXT_METADATA = ("country", "model", "model_path", "prompt")
