"""The orders command's settings, config ``commands.orders`` (formerly keys of ``billing:``, still
accepted there with a note, as are their ``SMSBOT_BILLING_*`` variables): the grace period per
billing kind, the cancel words, the late-cancel and "which order?" windows and the short code
sending reminders. `orders_settings(settings)` reads them. (The billing period's zone and a run's
batch stay ``billing.*``: `smsbot.billing`'s.)"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from smsbot.command import OwnSettings, configured_short_code
from smsbot.config import BillingKind
from smsbot.text import normalize

NAME = "orders"  # the command's name (`OrdersCommand.name`): its settings are config ``commands.orders``
FORMER_SECTION = "billing"  # where its keys were before: billing.<key> -> commands.orders.<key>


class OrdersSettings(BaseModel):
    """Charge reminders and cancel by reply (config ``commands.orders``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace_seconds: dict[BillingKind, int] = Field(
        default_factory=lambda: {BillingKind.MONTHLY: 86400, BillingKind.ON_DEMAND: 86400},
        description="per billing kind: time from the order to the first charge; a cancel word before then costs nothing",
    )
    cancel_words: list[str] = Field(default_factory=lambda: ["TD", "取消", "N"], min_length=1)
    late_cancel_seconds: int = Field(30 * 86400, ge=0, description="after the grace period a cancel word still cancels the latest order (from the next period on) this long after it")
    choice_validity_seconds: int = Field(86400, ge=1, description="how long the 'which order?' list accepts numeric replies")
    short_code: str | None = Field(None, description="sends the reminders; None: the first short code enabling `orders`")

    @field_validator("cancel_words", mode="before")
    @classmethod
    def _split_words(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: SMSBOT_COMMANDS_ORDERS_CANCEL_WORDS=TD,取消
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("cancel_words")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        out = []
        for w in v:
            n = normalize(w)
            if not n or n.isdigit():
                raise ValueError(f"cancel word {w!r} must be non-empty and not a number (numbers answer menus)")
            out.append(n)
        return out

    @field_validator("short_code", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("short_code")
    @classmethod
    def _known_short_code(cls, v: str | None, info: ValidationInfo) -> str | None:
        return configured_short_code(v, info)

    @field_validator("grace_seconds")
    @classmethod
    def _grace(cls, v: dict[BillingKind, int]) -> dict[BillingKind, int]:
        missing = [k.value for k in BillingKind if k not in v]
        if missing:
            raise ValueError(f"grace_seconds needs every billing kind; missing: {', '.join(missing)}")
        if any(s < 0 for s in v.values()):
            raise ValueError("grace_seconds must be >= 0")
        return v


FORMER_SETTINGS = {f"{FORMER_SECTION}.{key}": key for key in OrdersSettings.model_fields}

orders_settings = OwnSettings(NAME, OrdersSettings)  # orders_settings(settings) -> ``commands.orders`` of `settings`, validated
