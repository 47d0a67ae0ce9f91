"""Moved: the Hugging Face scorer lives in :mod:`culturealign.backends.hf`, the backend interface (``RowScores``,
``place_soft_prompt``) in :mod:`culturealign.backends.base`. Re-exported here so older imports keep working."""
from .backends.base import PLACEMENTS, RowScores, place_soft_prompt  # noqa: F401
from .backends.hf import SurveyScorer, _common_prefix, activation_checkpointing  # noqa: F401
