"""Configuration: load `config.yaml`, apply `SMSBOT_*` environment overrides, validate, freeze.

Every other module receives a frozen `Settings` and never reads files or the environment itself;
it imports what it needs from `smsbot.config` (the names below), never from a module inside it.

- `schema`: what a valid configuration is (the pydantic models and their enums);
- `checks`: checks across sections of validated settings;
- `env`: which ``SMSBOT_*`` variable sets which setting;
- `errors`: `ConfigError`, and how each problem is located (file line or variable) and printed;
- `extensions`: what the command registry adds (`extend`: migrations of former names, their `notes`,
  checks that need the commands);
- `loader`: `load`, `reload` and `from_dict` (file, overrides, relative paths, validation).
"""

from smsbot.config.env import ENV_PREFIX, NON_SETTING_PREFIXES, NON_SETTING_VARS
from smsbot.config.errors import ConfigError
from smsbot.config.extensions import extend, notes
from smsbot.config.loader import DEFAULT_CONFIG_NAME, default_config_path, from_dict, load, reload
from smsbot.config.schema import (ALL_EVENTS, EVENT_TYPES, ApiSettings, BillingKind, BillingSettings, BindMode, CmppFee,
                                  CmppService, CmppSettings, LinkProtocol,
                                  DeliverySettings, DispatchSettings, Durability, Language, LogSettings, MenuSettings,
                                  MetricsSettings,
                                  RedisMode, RedisSettings, Service, Settings, ShortCodeSettings, SimulatorSettings,
                                  SmscSettings, SubscribersSettings, WebhookEndpoint, WebhookEvent)

__all__ = [
    "ALL_EVENTS", "DEFAULT_CONFIG_NAME", "ENV_PREFIX", "EVENT_TYPES", "NON_SETTING_PREFIXES", "NON_SETTING_VARS",
    "ApiSettings", "BillingKind", "BillingSettings", "BindMode", "CmppFee", "CmppService", "CmppSettings", "ConfigError",
    "DeliverySettings", "DispatchSettings", "Durability", "Language", "LinkProtocol", "LogSettings", "MenuSettings",
    "MetricsSettings", "RedisMode", "RedisSettings",
    "Service", "Settings", "ShortCodeSettings", "SimulatorSettings", "SmscSettings", "SubscribersSettings",
    "WebhookEndpoint", "WebhookEvent",
    "default_config_path", "extend", "from_dict", "load", "notes", "reload",
]
