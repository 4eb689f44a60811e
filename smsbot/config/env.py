"""Environment overrides: which ``SMSBOT_*`` variable sets which setting.

Every leaf can be set as ``SMSBOT_<SECTION>_<KEY>`` (upper case, dots become underscores), e.g.
``SMSBOT_SMSC_HOST``, ``SMSBOT_SMSC_PORT``, ``SMSBOT_REDIS_URL``, ``SMSBOT_SIMULATOR_SMPP_PORT``;
``SMSBOT_DATA_DIR`` sets the top-level ``data_dir`` and ``SMSBOT_COMMANDS_<NAME>_<KEY>`` a command's
own setting. A variable that matches no setting is reported with the closest one that does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from smsbot.config.errors import did_you_mean
from smsbot.config.extensions import former_keys
from smsbot.config.schema import section_models

ENV_PREFIX = "SMSBOT_"

# SMSBOT_* variables that are not settings: read by the CLI (click's auto_envvar_prefix SMSBOT_CLI_*)
# or by tests; `load` warns about any other SMSBOT_* variable that matches no setting.
NON_SETTING_VARS = {"SMSBOT_CONFIG", "SMSBOT_PIDFILE", "SMSBOT_WEB_SCREENSHOT"}
NON_SETTING_PREFIXES = ("SMSBOT_CLI_",)


def env_overrides(environ: dict[str, str], unknown: list[str] | None = None) -> list[tuple[list[str], str, str]]:
    """Map SMSBOT_SECTION_KEY variables onto config paths, matching known sections and fields:
    ``(path, value, variable)``. Variables matching nothing are appended to `unknown` with a
    "did you mean" where a setting's variable is close."""
    sections = _section_keys()
    models = section_models()
    out: list[tuple[list[str], str, str]] = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest == "data_dir":
            out.append((["data_dir"], value, var))
            continue
        if rest.startswith("commands_"):  # SMSBOT_COMMANDS_<NAME>_<KEY>: command names have no '_'
            name, _, key = rest[len("commands_"):].partition("_")
            if name and key:
                out.append((["commands", name, key], value, var))
                continue
        matched = False
        for section, keys in sections.items():
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                if key in keys:
                    out.append(([section, key], value, var))
                    matched = True
                elif section in models and (inner := _nested(models[section], key)) is not None:  # SMSBOT_SMSC_CMPP_SECRET: smsc.cmpp.secret
                    out.append(([section, *inner], value, var))
                    matched = True
                break
        if not matched and unknown is not None and var not in NON_SETTING_VARS and not var.startswith(NON_SETTING_PREFIXES):
            unknown.append(var + did_you_mean(var, known_env_vars()))
    return out


def _section_keys() -> dict[str, list[str]]:
    """Section -> its keys: the schema's, and those a command still takes there under a former name."""
    out = {name: list(model.model_fields) for name, model in section_models().items()}
    for section, keys in former_keys().items():
        known = out.setdefault(section, [])
        known += [k for k in keys if k not in known]
    return out


def _nested(model: Any, key: str) -> list[str] | None:
    """`key` as <field>_<subfield> of a section's block that is a model itself (smsc.cmpp)."""
    for name, field in model.model_fields.items():
        inner = field.annotation
        if key.startswith(name + "_") and isinstance(inner, type) and issubclass(inner, BaseModel):
            sub = key[len(name) + 1:]
            if sub in inner.model_fields:
                return [name, sub]
    return None


def known_env_vars() -> list[str]:
    names = [ENV_PREFIX + "DATA_DIR", *NON_SETTING_VARS]
    models = section_models()
    for section, keys in _section_keys().items():
        model = models.get(section)
        for f in keys:
            field = model.model_fields.get(f) if model is not None else None
            inner = field.annotation if field is not None else None
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                names += [f"{ENV_PREFIX}{section}_{f}_{g}".upper() for g in inner.model_fields]
            else:
                names.append(f"{ENV_PREFIX}{section}_{f}".upper())
    return names


def set_path(tree: dict[str, Any], path: list[str], value: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value
