"""Decimal numbers a client writes in a header or a query: ASCII digits, bounded.

Python's ``int()`` and ``str.isdigit()`` accept any Unicode digit (``١٢``, ``²``)
and ``int()`` raises on a string of more than 4,300 digits; neither is a number
of the HTTP contract. Every client-supplied decimal (``Range``, ``Last-Event-ID``,
``limit``, ``after``, ``attempt``, a signed URL's ``exp``, a listing cursor's
seq) is read here: 1 to :data:`MAX_DIGITS` of ``0-9``, nothing else.
"""

from __future__ import annotations

import re

MAX_DIGITS = 19
"""At most this many digits: every such number fits a signed 64-bit integer's width."""
MAX_INT64 = 2**63 - 1
DIGITS = re.compile(r"[0-9]+")
"""One or more ASCII digits (use with ``fullmatch``): RFC 9110's ``1*DIGIT``."""


def is_digits(text: str) -> bool:
    """True when ``text`` is one or more ASCII digits (of any length)."""
    return DIGITS.fullmatch(text) is not None


def parse_decimal(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as an integer when it is 1 to ``max_digits`` ASCII digits, else None.

    No sign, no white space, no ``_``, no Unicode digits; a longer string is never
    handed to ``int()``.
    """
    if not 0 < len(text) <= max_digits or not is_digits(text):
        return None
    return int(text)
