"""One exception type for every user-facing error: the CLI prints its message and exits non-zero."""


class CultureAlignError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""
