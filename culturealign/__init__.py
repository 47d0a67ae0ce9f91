"""culturealign: measure and align the cultural profile of language models."""
__version__ = "0.1.0"
