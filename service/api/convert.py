"""Small translations between HTTP shapes and domain values, shared by the routers."""

from __future__ import annotations

import base64
import binascii

from service.errors import FieldProblem, InvalidInput


def encode_cursor(last_id: str | None) -> str | None:
    return None if last_id is None else base64.urlsafe_b64encode(last_id.encode()).decode()


CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$"
"""base64url, padded: what `encode_cursor` writes."""


def decode_cursor(cursor: str | None) -> str | None:
    """The id a page ended at. Any well-formed cursor is a position in id order (keyset
    pagination), so a stale or hand-made one pages on from there instead of failing."""
    if not cursor:
        return None
    try:
        raw = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True)
    except binascii.Error:
        raise InvalidInput([FieldProblem("cursor", "not a cursor returned by this API")]) from None
    return raw.decode("utf-8", errors="replace")
