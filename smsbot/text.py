"""What a subscriber's text says before any command looks at it: the normalised form commands
match on, a list of item numbers, the words after a keyword exactly as typed. Pure functions."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
_NUMBER_SEPARATORS = re.compile(r"[\s,，、;；/.。]+")
_MAX_NUMBERS = 50


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII), trimmed, inner spaces collapsed, upper case."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().upper()


def parse_numbers(norm: str) -> list[int] | None:
    """``'1 3'``, ``'1,3'``, ``'1，3'``, ``'１'`` -> [1, 3]; anything else -> None."""
    tokens = [t for t in _NUMBER_SEPARATORS.split(norm) if t]
    if not tokens or len(tokens) > _MAX_NUMBERS:
        return None
    if not all(t.isascii() and t.isdigit() and len(t) <= 4 for t in tokens):
        return None
    return [int(t) for t in tokens]


_ARG_SEPARATORS = " \t\r\n:：,，、;；-—"


def after_keyword(raw: str, keyword: str) -> str | None:
    """The subscriber's own text after a leading `keyword`, exactly as typed (case, width, emoji,
    punctuation kept), without the separators between the two (spaces, ``:``, ``：``, ``,`` ...);
    None when `raw` does not begin with the keyword. The keyword is compared like `normalize`
    compares (``ｔｓ 网速慢`` and ``Ts:网速慢`` both begin with ``TS``)."""
    i, n = 0, len(raw)
    while i < n and raw[i].isspace():
        i += 1
    want = keyword.upper()
    got = ""
    while i < n and len(got) < len(want):
        got += unicodedata.normalize("NFKC", raw[i]).upper()
        i += 1
        if not want.startswith(got):
            return None
    if got != want:
        return None
    while i < n and (raw[i].isspace() or raw[i] in _ARG_SEPARATORS):
        i += 1
    return raw[i:].rstrip()
