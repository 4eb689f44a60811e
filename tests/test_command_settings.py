"""A command's settings are its own (``commands.<name>``), and where they were before still works:
the orders command's keys formerly in ``billing:`` (the usage command's former ``usage:`` section is
tests/test_usage_model.py's). Pure: configuration only, no Redis, no sockets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from commands.orders import OrdersCommand, reminder_short_code
from commands.orders.settings import orders_settings
from smsbot import config

from .conftest import REPO

pytestmark = pytest.mark.unit
ORDER_KEYS = ("grace_seconds", "cancel_words", "late_cancel_seconds", "choice_validity_seconds", "short_code")


def _raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def _before(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` as a configuration of before said it: the orders keys in `billing:`."""
    old = copy.deepcopy(raw)
    old["billing"].update(old["commands"].pop("orders"))
    return old


def test_the_orders_settings_are_the_commands_own():
    s = config.from_dict(_raw())
    own = orders_settings(s)
    assert own.cancel_words == ["TD", "取消", "N"] and own.grace_seconds[config.BillingKind.MONTHLY] == 86400
    assert OrdersCommand().options(s) == own and config.notes(s) == []
    assert set(ORDER_KEYS).isdisjoint(config.BillingSettings.model_fields)  # billing keeps its own: zone, period, batch


def test_the_keys_of_before_in_billing_are_accepted_with_a_note_each():
    old = _before(_raw())
    old["billing"].update(cancel_words=["退订", "TD"], short_code="10086", late_cancel_seconds=60)
    s = config.from_dict(old)
    own = orders_settings(s)
    assert own.cancel_words == ["退订", "TD"] and own.late_cancel_seconds == 60 and reminder_short_code(s) == ("10086", "zh-CN")
    noted = dict(config.notes(s))
    assert sorted(noted) == sorted(f"billing.{k}" for k in ORDER_KEYS)
    assert "'commands.orders.cancel_words'" in noted["billing.cancel_words"] and "SMSBOT_COMMANDS_ORDERS_CANCEL_WORDS" in noted["billing.cancel_words"]
    assert s.billing.timezone == "Asia/Shanghai" and s.billing.batch == 500


@pytest.mark.parametrize("former", [False, True], ids=["commands.orders", "billing (before)"])
@pytest.mark.parametrize("key,value,where", [
    ("cancel_words", ["TD", "1"], "cancel_words"),
    ("short_code", "12345", "short_code"),
    ("grace_seconds", {"monthly": 60}, "grace_seconds"),
    ("choice_validity_seconds", 0, "choice_validity_seconds"),
])
def test_a_wrong_orders_setting_is_named_where_it_was_given(key: str, value: Any, where: str, former: bool):
    raw = _raw()
    raw["commands"]["orders"][key] = value
    if former:
        raw = _before(raw)
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    assert [k for k, _m in e.value.errors] == [f"billing.{where}" if former else f"commands.orders.{where}"], e.value.errors


@pytest.mark.parametrize("var", ["SMSBOT_BILLING_CANCEL_WORDS", "SMSBOT_COMMANDS_ORDERS_CANCEL_WORDS"])
def test_the_variables_of_before_still_set_them(var: str):
    warned: list[str] = []
    s = config.load(REPO / "config.yaml", warn=warned.append, environ={var: "TD,退订", "SMSBOT_BILLING_BATCH": "7"})
    assert orders_settings(s).cancel_words == ["TD", "退订"] and s.billing.batch == 7 and not warned
    assert [k for k, _n in config.notes(s)] == (["billing.cancel_words"] if var.startswith("SMSBOT_BILLING") else [])


def test_a_misspelt_variable_of_before_is_still_named():
    warned: list[str] = []
    config.load(REPO / "config.yaml", warn=warned.append, environ={"SMSBOT_BILLING_CANCEL_WORD": "TD"})
    assert len(warned) == 1 and "SMSBOT_BILLING_CANCEL_WORDS" in warned[0], warned
