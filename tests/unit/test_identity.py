"""`smsbot.identity.SenderIdentity`: a value — what marks an MO's replies and guards."""

from __future__ import annotations

import dataclasses

import pytest

from smsbot.identity import SenderIdentity

pytestmark = pytest.mark.unit


def test_the_token_names_consumer_and_session_and_moves_on_with_each():
    me = SenderIdentity("bot-1", ("p0:", "p1:"))
    nxt = me.next_session()
    renamed = nxt.renamed("bot-1.1")
    assert [i.token for i in (me, nxt, renamed)] == ["bot-1/1", "bot-1/2", "bot-1.1/3"]
    assert me.token == "bot-1/1"  # a value: the old one is unchanged
    assert renamed.lease_key(1) == "p1:bot-1.1" and me.lease_key(0) == "p0:bot-1"


def test_an_identity_cannot_be_changed_in_place():
    me = SenderIdentity("bot-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        me.session = 2  # type: ignore[misc]
    assert me == SenderIdentity("bot-1") != me.next_session()
