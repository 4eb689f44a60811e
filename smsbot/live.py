"""What is in force: the settings and the router built from them, swapped together by a reload.

Every long-lived object of a running bot (dispatcher, sender, delivery, pipeline, transport)
holds the one `Live` of its bot and reads ``live.settings`` / ``live.router`` / ``live.replies``
at use time, so a reload (SIGHUP) is one assignment here (`swap`) and nothing else is patched.
The values are immutable (frozen settings, a router and its replies built for them), and a reader
sees the old ones or the new ones, never half of each.
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
    def __init__(self, settings: Settings, router: Router):
        self._now = InForce(settings, router, router.replies)

    @property
    def now(self) -> InForce:
        """Settings and router as one value (read once where both are used together)."""
        return self._now

    @property
    def settings(self) -> Settings:
        return self._now.settings

    @property
    def router(self) -> Router:
        return self._now.router

    @property
    def replies(self) -> Replies:
        return self._now.replies

    def swap(self, settings: Settings, router: Router) -> None:
        self._now = InForce(settings, router, router.replies)
