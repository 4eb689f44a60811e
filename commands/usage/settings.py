"""The usage command's settings, config ``commands.usage`` (formerly the top-level ``usage:``, still
accepted with a note, as are the ``SMSBOT_USAGE_*`` variables): data plans (quota, alert thresholds,
out-of-plan rate), the default plan, the zone of billing cycles and the short code sending alerts.
`usage_settings(settings)` reads them; 1 MB = 1024 * 1024 bytes."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from smsbot.codec import segment_text
from smsbot.command import OwnSettings, configured_short_code

NAME = "usage"  # the command's name (`UsageCommand.name`): its settings are config ``commands.usage``


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataPlan(_Frozen):
    """A data plan: monthly quota, alert thresholds (remaining MB; None = default_thresholds_mb)
    and the out-of-plan rate. 1 MB = 1024 * 1024 bytes."""

    code: str = Field(pattern=r"^[A-Z0-9_]{1,32}$")
    name: str = Field(min_length=1)
    name_en: str | None = None
    quota_mb: int = Field(ge=1, le=64 * 1024 * 1024)
    thresholds_mb: list[int] | None = None
    overage_fen_per_mb: int = Field(ge=0)

    @field_validator("name", "name_en")
    @classmethod
    def _fits(cls, v: str | None) -> str | None:
        if v:  # the name goes into replies as it is: on its own it must fit in 255 SMS parts
            try:
                segment_text(v)
            except ValueError as e:
                raise ValueError(f"a reply naming it could never be sent: {e}") from None
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> DataPlan:
        if self.thresholds_mb is not None:
            _check_thresholds(self.thresholds_mb, self.quota_mb)
        return self


def _check_thresholds(thresholds: list[int], quota_mb: int | None) -> None:
    if any(t < 0 for t in thresholds):
        raise ValueError("thresholds must be >= 0 MB")
    if len(set(thresholds)) != len(thresholds):
        raise ValueError("thresholds must be unique")
    if quota_mb is not None and any(t >= quota_mb for t in thresholds):
        raise ValueError(f"thresholds must be below the quota ({quota_mb} MB)")


class UsageSettings(_Frozen):
    """Data plans and data-usage alerts (config ``commands.usage``)."""

    timezone: str = Field("Asia/Shanghai", description="billing cycles (YYYY-MM) and alert times are in this zone")
    default_thresholds_mb: list[int] = Field(default_factory=lambda: [10, 5, 0])
    default_plan: str | None = Field(None, description="plan of reports that name none")
    short_code: str | None = Field(None, description="sends the alerts; None: the first short code enabling `usage`")
    plans: list[DataPlan] = Field(default_factory=list)

    @field_validator("default_thresholds_mb", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: SMSBOT_COMMANDS_USAGE_DEFAULT_THRESHOLDS_MB=10,5,0
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("default_plan", "short_code", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd names
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("short_code")
    @classmethod
    def _known_short_code(cls, v: str | None, info: ValidationInfo) -> str | None:
        return configured_short_code(v, info)

    @model_validator(mode="after")
    def _plans(self) -> UsageSettings:
        _check_thresholds(self.default_thresholds_mb, None)
        codes = [p.code for p in self.plans]
        if len(set(codes)) != len(codes):
            raise ValueError("duplicate plan code")
        for p in self.plans:
            if p.thresholds_mb is None and any(t >= p.quota_mb for t in self.default_thresholds_mb):
                raise ValueError(f"plan {p.code}: default_thresholds_mb must be below its quota ({p.quota_mb} MB); give it thresholds_mb")
        if self.default_plan is not None and self.default_plan not in codes:
            raise ValueError(f"default_plan {self.default_plan!r} is not a plan; known: {', '.join(codes) or 'none'}")
        return self

    def plan(self, code: str) -> DataPlan | None:
        for p in self.plans:
            if p.code == code:
                return p
        return None

    def thresholds_mb(self, plan: DataPlan) -> list[int]:
        """The plan's alert thresholds, highest first."""
        return sorted(plan.thresholds_mb if plan.thresholds_mb is not None else self.default_thresholds_mb, reverse=True)


usage_settings = OwnSettings(NAME, UsageSettings)  # usage_settings(settings) -> ``commands.usage`` of `settings`, validated
