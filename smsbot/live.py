"""What is in force: the settings and the router built from them, swapped together by a reload.

Every long-lived object of a running bot (dispatcher, sender, delivery, pipeline, transport)
holds the one `Live` of its bot and reads ``live.settings`` / ``live.router`` at use time, so a
reload (SIGHUP) is one assignment here (`swap`) and nothing else is patched. Both values are
immutable (frozen settings, a router built for them), and a reader sees the old pair or the new
one, never half of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsbot.config import Settings
from smsbot.router import Router


@dataclass(frozen=True, slots=True)
class InForce:
    settings: Settings
    router: Router


class Live:
    def __init__(self, settings: Settings, router: Router):
        self._now = InForce(settings, router)

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

    def swap(self, settings: Settings, router: Router) -> None:
        self._now = InForce(settings, router)
