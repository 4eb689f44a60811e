"""Text normalisation, number parsing and routing (pure Python)."""

import pytest
from hypothesis import given, strategies as st

import commands
from smsbot.router import Router
from smsbot.text import normalize, parse_numbers


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1", [1]),
        ("1 3", [1, 3]),
        ("1,3", [1, 3]),
        ("1，3", [1, 3]),
        ("１", [1]),
        ("１，３", [1, 3]),
        ("  2  ", [2]),
        ("1、2；3", [1, 2, 3]),
        ("01", [1]),
        ("abc", None),
        ("1a", None),
        ("", None),
        ("一", None),
        ("1 x 3", None),
    ],
)
def test_parse_numbers(text, expected):
    assert parse_numbers(normalize(text)) == expected


@given(st.lists(st.integers(min_value=1, max_value=99), min_size=1, max_size=10), st.sampled_from([" ", ",", "，", "、", " , "]))
def test_parse_numbers_any_separator(numbers, sep):
    text = sep.join(str(n) for n in numbers)
    full_width = text.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
    assert parse_numbers(normalize(text)) == numbers
    assert parse_numbers(normalize(full_width)) == numbers


def test_normalize_full_width_and_case():
    assert normalize("  ｃｘｌｌ ") == "CXLL"
    assert normalize("００００") == "0000"


def test_route(make_settings):
    r = Router(make_settings(), commands.all_commands())
    assert r.route("10086", "0000").handler == "subscriptions.menu"
    assert r.route("10086", "００００").handler == "subscriptions.menu"
    assert r.route("10086", " 00000 ").handler == "subscriptions.menu"
    assert r.route("10086", "帮助").handler == "help"
    reply = r.route("10086", "1，3")
    assert (reply.handler, reply.args["numbers"]) == ("reply", [1, 3])
    assert "numbers" not in r.route("10086", "hello").args
    assert not r.serves("12345")
