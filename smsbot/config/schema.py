"""What a valid configuration is: the settings models (pydantic, frozen) and their enums.

Each section of `config.yaml` is a model here, checked field by field and within the section;
`Settings` holds them all. Relative paths (``data_dir``, ``smsc.tls_ca_file``) are made absolute
while validating, from the ``base`` directory the loader passes as the validation context.
`section_models` and `fields_at` tell which keys exist where (for environment variables and for
"unknown key" messages). Checks across sections are in `smsbot.config.checks`.
"""

from __future__ import annotations

import enum
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from smsbot.config.errors import did_you_mean
from smsbot.periods import zone


def _absolute(path: Path, info: ValidationInfo) -> Path:
    """`path` made absolute from the directory relative paths are taken from: `load`'s `base` (the
    directory the command started in), passed down as the validation context."""
    if path.is_absolute():
        return path
    base = (info.context or {}).get("base") or Path.cwd()
    return Path(os.path.normpath(Path(base) / path))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BindMode(str, enum.Enum):
    TRANSCEIVER = "transceiver"
    RECEIVER_TRANSMITTER = "receiver+transmitter"


class BillingKind(str, enum.Enum):
    MONTHLY = "monthly"
    ON_DEMAND = "on-demand"


class Language(str, enum.Enum):
    ZH_CN = "zh-CN"
    EN = "en"


# -- CMPP (issue 23): the link protocol and CMPP's own settings --------------------------------------
class LinkProtocol(str, enum.Enum):
    """What `smsc` speaks: SMPP 3.4, or China Mobile's CMPP 3.0 / 2.0 (`smsbot.cmpp_session`)."""

    SMPP = "smpp"
    CMPP3 = "cmpp3"
    CMPP2 = "cmpp2"


class CmppFee(str, enum.Enum):
    """How a charged reply is billed: by the catalogue (monthly: FeeType 03, on-demand: 02), or free (01)."""

    CATALOGUE = "catalogue"
    FREE = "free"


class CmppService(_Frozen):
    service_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,10}$", description="the Service_Id of this service's charged replies")
    fee: CmppFee = CmppFee.CATALOGUE


class CmppSettings(_Frozen):
    """smsc.protocol cmpp3 / cmpp2: who we are to the gateway (ISMG) and what our MTs carry."""

    sp_id: str = Field("901234", pattern=r"^[0-9A-Za-z]{1,6}$", description="the SP_Id: CONNECT's Source_Addr, SUBMIT's Msg_src")
    secret: str = Field("secret", repr=False, description="the shared secret of AuthenticatorSource (never logged)")
    service_id: str = Field("HELP", pattern=r"^[A-Za-z0-9_.-]{1,10}$", description="the Service_Id of free replies (menus, help, answers)")
    services: dict[str, CmppService] = Field(default_factory=dict, description="per catalogue service code: its Service_Id and fee")
    charged_templates: list[str] = Field(default_factory=lambda: ["orders.reminder"],
                                         description="reply templates that charge the service their data names (`code`)")
    window: int = Field(16, ge=1, description="SUBMITs awaiting SUBMIT_RESP at once (ISMGs commonly allow 16)")


class SmscSettings(_Frozen):
    protocol: LinkProtocol = Field(LinkProtocol.SMPP, description="smpp, or cmpp3 / cmpp2 (China Mobile's ISMG; see smsc.cmpp)")
    cmpp: CmppSettings = CmppSettings()
    host: str = "127.0.0.1"
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field("smsbot", min_length=1, max_length=15)
    password: str = Field("secret", max_length=8)
    system_type: str = Field("", max_length=12)
    bind_mode: BindMode = BindMode.TRANSCEIVER
    enquire_link_interval: float = Field(30.0, gt=0)
    response_timeout: float = Field(10.0, gt=0)
    reconnect_initial: float = Field(0.5, gt=0)
    reconnect_max: float = Field(30.0, gt=0)
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str = Field("", description="PEM file of a private CA to trust besides the system's (TLS)")
    max_pdu_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024,
                               description="a PDU announcing more drops the link (a corrupt stream)")
    source_addr_ton: int = Field(0, ge=0, le=6)
    source_addr_npi: int = Field(0, ge=0, le=18)
    dest_addr_ton: int = Field(1, ge=0, le=6, description="TON of MT destinations: 1 international (country code + "
                               "national number), 2 national (the national number), 0 unknown (as the number was given)")
    dest_addr_npi: int = Field(1, ge=0, le=18, description="NPI of MT destinations (1: E.164)")
    registered_delivery: int = Field(0, ge=0, le=1)
    window: int = Field(10, ge=1, description="max submit_sm awaiting submit_sm_resp")
    max_tps: float = Field(0, ge=0, description="submit_sm per second per bind; 0 = unlimited")
    drain_timeout: float = Field(5.0, ge=0, description="on stop, seconds to keep sending the outbox before unbinding")

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file_absolute(cls, v: str, info: ValidationInfo) -> str:
        return str(_absolute(Path(v), info)) if v else v

    @property
    def is_cmpp(self) -> bool:
        return self.protocol is not LinkProtocol.SMPP

    @property
    def submit_window(self) -> int:
        """Submits awaiting their resp at once: `window` (SMPP) or `cmpp.window`."""
        return self.cmpp.window if self.is_cmpp else self.window

    @model_validator(mode="after")
    def _backoff_order(self) -> SmscSettings:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        return self


class ShortCodeSettings(_Frozen):
    code: str = Field(pattern=r"^[0-9]{3,8}$")
    commands: list[str] = Field(min_length=1)
    language: Language = Language.ZH_CN


class RedisMode(str, enum.Enum):
    SINGLE = "single"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class Durability(str, enum.Enum):
    """When an MO counts as stored (`redis.durability`; README "High availability")."""
    OS = "os"  # Redis wrote it (AOF in the OS page cache): survives a process crash
    FSYNC = "fsync"  # Redis fsynced it (appendfsync always): survives a machine crash
    REPLICA = "replica"  # `min_replicas` replicas acknowledged it (WAIT): survives losing the primary


class RedisSettings(_Frozen):
    """single: `url` (None: the bundled redis-server in data_dir); sentinel: the primary of
    `sentinel_service` as the `sentinels` report it; cluster: `url` names any node (seed)."""

    mode: RedisMode = RedisMode.SINGLE
    url: str | None = None  # single: None starts the bundled redis-server in data_dir
    sentinels: list[str] = Field(default_factory=list, description="sentinel mode: host:port of each sentinel")
    sentinel_service: str = Field("mymaster", min_length=1, description="sentinel mode: the monitored primary's name")
    password: str | None = Field(None, repr=False, description="AUTH password of the data nodes (never logged)")
    key_prefix: str = Field("smsbot", pattern=r"^[A-Za-z0-9_.-]+$")
    shards: int = Field(16, ge=1, le=16384, description="hash-tag buckets for subscriber keys and outbox streams")
    appendfsync: str | None = Field(None, pattern=r"^(always|everysec|no)$", description="the bundled server's AOF "
                                    "fsync policy; empty: everysec, or always with durability fsync")
    # -- durability (issue 22): when an MO is acknowledged to the SMSC -----------------------------
    durability: Durability = Field(Durability.OS, description="os: Redis wrote it; fsync: Redis fsynced it "
                                   "(appendfsync always); replica: min_replicas replicas acknowledged it (WAIT)")
    min_replicas: int = Field(1, ge=1, le=64, description="replica durability: replicas that must acknowledge each write")
    wait_timeout_ms: int = Field(500, ge=1, le=60000, description="replica durability: how long a round trip waits for "
                                 "them; fewer in time is a temporary error to the SMSC, which redelivers")

    @field_validator("durability")
    @classmethod
    def _durability_fits(cls, v: Durability, info: ValidationInfo) -> Durability:
        # one line, at redis.durability (PydanticCustomError: no "Value error," before it)
        d = info.data
        if v is Durability.FSYNC and d.get("appendfsync") not in (None, "always"):
            raise PydanticCustomError("durability", "fsync needs appendfsync always, not {was} (remove "
                                      "redis.appendfsync or set it to always)", {"was": repr(d["appendfsync"])})
        if v is Durability.REPLICA and d.get("mode") is RedisMode.SINGLE and not d.get("url"):
            raise PydanticCustomError("durability", "replica needs a Redis with replicas; the bundled server has none "
                                      "(set redis.url to a primary, or redis.mode sentinel or cluster)")
        return v

    @property
    def fsync_policy(self) -> str:
        """The `appendfsync` a server smsbot starts runs with (`durability: fsync` means always)."""
        return self.appendfsync or ("always" if self.durability is Durability.FSYNC else "everysec")

    @field_validator("url", "password", "appendfsync", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):  # from the environment: SMSBOT_REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, v: list[str]) -> list[str]:
        for item in v:
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"sentinel {item!r} must be host:port")
        return v

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        out = []
        for item in self.sentinels:
            host, _, port = item.rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return out


class Service(_Frozen):
    code: str = Field(pattern=r"^[A-Z0-9_]{1,32}$")
    name: str = Field(min_length=1)
    name_en: str | None = None
    price_fen: int = Field(ge=0)
    kind: BillingKind = BillingKind.MONTHLY


class MenuSettings(_Frozen):
    validity_seconds: int = Field(86400, ge=1)
    max_items: int = Field(50, ge=1, le=200)
    expired_notice_seconds: int = Field(7 * 86400, ge=0, description="how long after expiry a number still gets 'menu expired'")


class DispatchSettings(_Frozen):
    redelivery_guard_seconds: int = Field(
        600, ge=0, validation_alias=AliasChoices("redelivery_guard_seconds", "dedup_seconds"),
        description="how long an MO whose deliver_sm_resp may have been lost is remembered, so that the "
                    "SMSC's redelivery of it is not applied twice (0: no guard)")
    reassembly_timeout_seconds: int = Field(300, ge=1)
    mt_record_seconds: int = Field(7 * 86400, ge=60, description="how long sent-MT records (smsbot mt show, receipts) are kept")
    mt_records: str = Field("auto", pattern=r"^(auto|always|never)$",
                            description="keep a record per sent MT part: auto = when smsc.registered_delivery asks for receipts")


class DeliverySettings(_Frozen):
    """Who sends which reply (`smsbot.delivery`): leases, adoption of a dead instance's replies,
    how soon sent replies are recorded."""

    heartbeat_seconds: float = Field(2.0, gt=0, description="how often an instance renews its lease")
    lease_seconds: float = Field(15.0, gt=0, description="an instance not renewing for this long is dead: siblings take its replies")
    poll_seconds: float = Field(0.25, gt=0, description="how often the queue (reminders, alerts, adopted replies) is read")
    adopt_every_seconds: float = Field(2.0, gt=0, description="how often dead instances' replies are looked for")
    orphan_age_seconds: float = Field(5.0, ge=0, description="a reply of a dead instance this old is adopted")
    ack_flush_seconds: float = Field(0.05, gt=0, description="sent replies are recorded in Redis at least this often")
    stuck_seconds: float = Field(60.0, gt=0, description="an instance whose SMPP loop has not turned for this long stops renewing its lease")

    @model_validator(mode="after")
    def _lease_longer(self) -> DeliverySettings:
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("lease_seconds must be at least 3 x heartbeat_seconds")
        return self


class LogSettings(_Frozen):
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:  # `level: debug` or SMSBOT_LOG_LEVEL=debug
        return v.strip().upper() if isinstance(v, str) else v
    mask_msisdn: bool = True
    format: str = Field("auto", pattern=r"^(auto|json|console)$")


class SimulatorSettings(_Frozen):
    host: str = "127.0.0.1"
    smpp_port: int = Field(2775, ge=0, le=65535)
    control_port: int = Field(8775, ge=0, le=65535)
    send_receipts: bool = True
    redeliver_seconds: float = Field(5.0, gt=0)
    profile: str = Field("", pattern=r"^(|field)$", description="'field': behave like SMSCs in the field (see README, Interoperability)")


class SubscribersSettings(_Frozen):
    country_code: str = Field("86", pattern=r"^([1-9][0-9]{0,2})?$",
                              description="home calling code: +86 138..., 86138... and 138... are one subscriber (smsbot.msisdn); empty: no stripping")

    @field_validator("country_code", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:  # `country_code: 86` in YAML is an int
        return "" if v is None else str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class MetricsSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 disables the HTTP endpoint")


class ApiSettings(_Frozen):
    """The HTTP API (smsbot.api): where it listens, its bearer tokens and limits."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0: `smsbot run` starts no API (`smsbot api` uses 8080)")
    tokens: list[str] = Field(default_factory=list, description="name:token:scopes (scopes joined with '+': events, notices, read, admin, or '*')")
    rate_per_second: float = Field(200.0, gt=0, description="per-token sustained request rate")
    burst: int = Field(400, ge=1, description="per-token burst")
    max_body_bytes: int = Field(16384, ge=256, le=1048576)

    @field_validator("tokens", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: SMSBOT_API_TOKENS=ops:s3cret:events+read,care:t0k:admin
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("tokens")
    @classmethod
    def _well_formed(cls, v: list[str]) -> list[str]:
        scopes = {"events", "notices", "read", "admin", "*"}
        names = set()
        for i, t in enumerate(v):
            parts = t.split(":")
            if len(parts) != 3 or not parts[0] or len(parts[1]) < 8:
                raise ValueError(f"token {i + 1}: expected name:token:scopes with a token of at least 8 characters")
            bad = [s for s in parts[2].split("+") if s not in scopes]
            if bad or not parts[2]:
                raise ValueError(f"token {i + 1} ({parts[0]}): unknown scope(s) {bad or ['']}; scopes: events, notices, read, admin, *")
            if parts[0] in names:
                raise ValueError(f"token name {parts[0]!r} used twice")
            names.add(parts[0])
        return v


class WebhookEvent(str, enum.Enum):
    """The events a webhook endpoint may ask for (README "Webhooks"; `smsbot.webhooks.events` makes them)."""

    RECEIPT = "mt.receipt"
    CANCELLED = "subscription.cancelled"
    REMINDED = "order.reminded"
    CHARGED = "charge.recorded"
    TICKET_OPENED = "ticket.opened"
    TICKET_RESOLVED = "ticket.resolved"
    NOTICE_REJECTED = "notice.rejected"


EVENT_TYPES = tuple(e.value for e in WebhookEvent)
ALL_EVENTS = "*"  # an endpoint's `events: ["*"]` wants every type


class WebhookEndpoint(_Frozen):
    """One receiver of webhooks (smsbot.webhooks): where, which events, its signing secret, retries."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="names it in logs, metrics, the CLI and the API")
    url: str = Field(description="http(s) URL the events are POSTed to")
    events: list[str] = Field(min_length=1, description="event types it wants, or [\"*\"] for all")
    secret: str | None = Field(None, repr=False, min_length=16, description="HMAC-SHA256 signing secret (never logged)")
    secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                   description="or: the environment variable holding the secret")
    timeout_seconds: float = Field(5.0, gt=0, le=60, description="a delivery not answered in this long failed")
    concurrency: int = Field(2, ge=1, le=32, description="deliveries in flight at once per bot instance (threads, connections)")
    max_attempts: int = Field(15, ge=1, le=1000, description="attempts before the event goes to the dead letters")
    backoff_initial_seconds: float = Field(1.0, gt=0, description="longest wait after the first failure, doubled after each")
    backoff_max_seconds: float = Field(600.0, gt=0, description="longest wait between two attempts")
    _env_secret: str = PrivateAttr("")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http:// or https:// URL with a host")
        try:
            parts.port
        except ValueError:
            raise ValueError(f"{v!r} has a bad port") from None
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for e in v:
            if e != ALL_EVENTS and e not in EVENT_TYPES:
                raise ValueError(f"unknown event {e!r}{did_you_mean(e, EVENT_TYPES)} (known: {', '.join(EVENT_TYPES)}, or \"*\")")
        if len(set(v)) != len(v):
            raise ValueError("an event is listed twice")
        return v

    @field_validator("secret_env")
    @classmethod
    def _env_set(cls, v: str | None, info: ValidationInfo) -> str | None:
        environ = (info.context or {}).get("environ", os.environ)
        if v is not None and not environ.get(v):
            raise ValueError(f"environment variable {v} is not set (this endpoint's signing secret); set it or give `secret`")
        return v

    @model_validator(mode="after")
    def _one_secret(self, info: ValidationInfo) -> WebhookEndpoint:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret (16 characters or more) and secret_env (the variable holding it)")
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_initial_seconds")
        if self.secret_env is not None:
            environ = (info.context or {}).get("environ", os.environ)
            secret = environ.get(self.secret_env, "")
            if len(secret) < 16:
                raise ValueError(f"the secret in {self.secret_env} must be 16 characters or more")
            self._env_secret = secret
        return self

    def signing_secret(self) -> str:
        return self.secret if self.secret is not None else self._env_secret

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class BillingSettings(_Frozen):
    """Billing runs and the billing period (smsbot/billing/); reminders and cancel by reply are the
    orders command's (``commands.orders``, its keys formerly here)."""

    timezone: str = Field("Asia/Shanghai", description="billing periods (calendar months) are in this zone; IANA name or +HH:MM")
    period: str = Field("month", pattern=r"^month$", description="the billing period (calendar month)")
    batch: int = Field(500, ge=1, le=100_000, description="subscribers per pipelined round trip in a billing run")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)  # raises ValueError naming the zone
        return v


class Settings(_Frozen):
    data_dir: Path = Path("./var")
    smsc: SmscSettings = SmscSettings()
    short_codes: list[ShortCodeSettings] = Field(min_length=1)
    redis: RedisSettings = RedisSettings()
    services: list[Service] = Field(default_factory=list)
    menu: MenuSettings = MenuSettings()
    dispatch: DispatchSettings = DispatchSettings()
    delivery: DeliverySettings = DeliverySettings()
    log: LogSettings = LogSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    metrics: MetricsSettings = MetricsSettings()
    api: ApiSettings = ApiSettings()
    billing: BillingSettings = BillingSettings()
    subscribers: SubscribersSettings = SubscribersSettings()
    webhooks: list[WebhookEndpoint] = Field(default_factory=list, description="receivers of webhook events (smsbot.webhooks)")
    templates: dict[str, dict[str, str]] = Field(default_factory=dict, description="per-language template overrides")
    commands: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="per-command settings, commands.<name>.<key>: plain data here, validated by "
                                          "each command when the command registry loads (see `extend`)")
    _notes: list[tuple[str, str]] = PrivateAttr(default_factory=list)  # (key, note): accepted but deprecated
    _base: Path | None = PrivateAttr(None)  # where relative paths were taken from (`reload` takes them from there again)

    @field_validator("data_dir")
    @classmethod
    def _data_dir_absolute(cls, v: Path, info: ValidationInfo) -> Path:
        return _absolute(v, info)

    @field_validator("services")
    @classmethod
    def _unique_services(cls, v: list[Service]) -> list[Service]:
        seen: set[str] = set()
        for s in v:
            if s.code in seen:
                raise ValueError(f"duplicate service code {s.code}")
            seen.add(s.code)
        return v

    @field_validator("short_codes")
    @classmethod
    def _unique_codes(cls, v: list[ShortCodeSettings]) -> list[ShortCodeSettings]:
        codes = [s.code for s in v]
        if len(set(codes)) != len(codes):
            raise ValueError("duplicate short code")
        return v

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, v: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [w.name for w in v]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"webhook name {n!r} used twice")
        return v

    def webhooks_want(self, event_type: str) -> bool:
        """Does any webhook endpoint want events of `event_type` (smsbot.webhooks.events)?"""
        return any(w.wants(event_type) for w in self.webhooks)

    @cached_property
    def service_index(self) -> dict[str, Service]:
        return {s.code: s for s in self.services}

    def service(self, code: str) -> Service | None:
        return self.service_index.get(code)

    def short_code(self, code: str) -> ShortCodeSettings | None:
        for sc in self.short_codes:
            if sc.code == code:
                return sc
        return None


def section_models() -> dict[str, type[BaseModel]]:
    """Top-level section name -> its model (the sections ``SMSBOT_<SECTION>_<KEY>`` variables set)."""
    return {
        "smsc": SmscSettings,
        "redis": RedisSettings,
        "menu": MenuSettings,
        "dispatch": DispatchSettings,
        "delivery": DeliverySettings,
        "log": LogSettings,
        "simulator": SimulatorSettings,
        "metrics": MetricsSettings,
        "api": ApiSettings,
        "billing": BillingSettings,
        "subscribers": SubscribersSettings,
    }


def fields_at(path: list[str]) -> list[str] | None:
    """The field names of the model found at `path` (dotted config path, list indexes included),
    or None when the path does not lead to a settings model."""
    import types
    import typing

    tp: Any = Settings
    for part in path:
        while True:  # unwrap Optional / list / dict down to a model
            origin = typing.get_origin(tp)
            if origin in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(args) != 1:
                    return None
                tp = args[0]
            else:
                break
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    while typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            return None
        tp = args[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None
