"""Subscriber numbers: what smsbot accepts as an MSISDN and its canonical form (digits only)."""

from __future__ import annotations

import re
import unicodedata

_VALID = re.compile(r"^[0-9]{5,15}$")


def normalize_msisdn(value: str) -> str:
    """'+86 138-0013-8000' -> '8613800138000'; raise ValueError for anything that is not 5-15 digits."""
    v = unicodedata.normalize("NFKC", value).strip()
    v = re.sub(r"[\s\-()]", "", v)
    if v.startswith("+"):
        v = v[1:]
    if not _VALID.match(v):
        raise ValueError(f"not a subscriber number: {value!r} (expected 5 to 15 digits)")
    return v
