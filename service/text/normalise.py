"""One normal form for names and short texts that are compared as keys."""

from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: `IBK-Innovation` -> `ibk innovation`."""
    return _NOT_WORD.sub(" ", text.casefold()).strip()
