"""What is in force: the settings and the router built from them, swapped together by a reload.

Every long-lived object of a running bot (dispatcher, sender, delivery, pipeline, transport)
holds the one `Live` of its bot and reads ``live.settings`` / ``live.router`` / ``live.replies``
at use time, so a reload (SIGHUP) is `swap` here and nothing else is patched. The values are
immutable (frozen settings, a router and its replies built for them); a reader of ``live.now`` sees
the old ones or the new ones, never half of each. What is built from them and kept (an encoder's
templates, `smsbot.submits`) is kept with the settings it was built from and made again when
``live.settings`` is another object.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsbot.config import Settings
from smsbot.replies import Replies
from smsbot.router import Router


@dataclass(frozen=True, slots=True)
class InForce:
    settings: Settings
    router: Router  # text -> intent (dispatch)
    replies: Replies  # reply intent -> text (the outbox), for the same configuration


class Live:
    """`now` (settings, router and replies as one value) and each of them alone, as plain attributes:
    they are read several times per MO, and a property costs ~30 ns more a read. Only `swap` sets them."""

    __slots__ = ("now", "settings", "router", "replies")
    now: InForce  # read once where more than one is used together
    settings: Settings
    router: Router
    replies: Replies

    def __init__(self, settings: Settings, router: Router):
        self.swap(settings, router)

    def swap(self, settings: Settings, router: Router) -> None:
        now = InForce(settings, router, router.replies)
        self.now = now  # first: a reader of `now` has the whole new value from here on
        self.settings, self.router, self.replies = now.settings, now.router, now.replies
