"""The billing rules: THE definition of what is charged and when, as pure Lua functions
(``smsbot/lua/billing_rules.lua``), the billing steps that run them (``smsbot/lua/billing.lua``),
and `Rules`, which asks the very same functions from Python (for `verify`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from smsbot.periods import Period
from smsbot.records import LIVE_STATES
from smsbot.steps import BILLING_RULES, LUA_DIR, RulesArgv
from smsbot.store import Store, _s

LIVE = LIVE_STATES  # the states of a subscription that is on (smsbot.records)
RULES_LUA = LUA_DIR / "billing_rules.lua"  # the rules (pure functions): steps, orders and verify use them
STEPS_LUA = LUA_DIR / "billing.lua"  # the billing steps (handlers billing.charge_period, billing.charge_use)
CHARGE_PERIOD = "billing.charge_period"
CHARGE_USE = "billing.charge_use"


def lua_fragment() -> str:
    """The billing steps with the rules before them: one fragment for the store (via the registry)."""
    return RULES_LUA.read_text(encoding="utf-8") + "\n" + STEPS_LUA.read_text(encoding="utf-8")


@dataclass
class Incarnation:
    """One subscription from its creation (order or admin) to its cancellation, as the audit tells it."""

    start: int
    due: int
    created_ms: int  # wall-clock time it was stored (audit entry id)
    cancel: int | None = None
    order_id: str = ""

    def cancelled_before_charge(self) -> bool:
        return self.cancel is not None and self.cancel < self.due


class Rules:
    """The billing rules for `verify`, evaluated by the same Lua functions the billing steps run
    (``billing_rules.lua``, one EVAL per batch of cases; the script reads no key).

    Two passes: while `recording`, every question is remembered and answered False; `evaluate`
    then asks Redis all of them at once, and the second pass gets the real answers."""

    CHUNK = 5000

    def __init__(self, store: Store):
        self.store = store
        self.recording = True
        self._cases: dict[tuple[Any, ...], str | None] = {}

    def _ask(self, case: tuple[Any, ...]) -> bool:
        if self.recording:
            self._cases.setdefault(case, None)
            return False
        return self._cases[case] == ""

    def monthly(self, inc: Incarnation, period: Period, at: int) -> bool:
        """Does subscription `inc` owe `period` at a run at time `at`?"""
        return self._ask(("m", inc.start, inc.due, inc.cancel if inc.cancel is not None else False, period.start_ms, at))

    def use(self, inc: Incarnation, at: int) -> bool:
        """Is a use at `at` of subscription `inc` charged?"""
        return self._ask(("u", inc.start, inc.due, inc.cancel if inc.cancel is not None else False, at))

    def evaluate(self) -> None:
        cases = list(self._cases)
        for i in range(0, len(cases), self.CHUNK):
            chunk = cases[i : i + self.CHUNK]
            answers = self.store.run_step(BILLING_RULES, (), RulesArgv(cases=json.dumps(chunk)))
            for case, why in zip(chunk, answers):
                self._cases[case] = _s(why)
        self.recording = False
