"""Loading: read `config.yaml`, apply the ``SMSBOT_*`` environment overrides, validate, freeze.

A value comes from the YAML file (``--config PATH`` or ``./config.yaml`` or the packaged default),
then from the environment (`smsbot.config.env`). Relative paths are taken from the directory the
command started in, once; `reload` takes them from there again. A problem is raised as a
`ConfigError` naming the key and where it comes from (the file's line, or the variable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from smsbot.config.checks import cross_checks
from smsbot.config.env import env_overrides, set_path
from smsbot.config.errors import ConfigError, did_you_mean, locate, yaml_error, yaml_lines
from smsbot.config.extensions import installed
from smsbot.config.schema import Settings, fields_at

DEFAULT_CONFIG_NAME = "config.yaml"


def default_config_path() -> Path:
    """`./config.yaml` when present, else the one shipped next to the package (repo checkout)."""
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    if here.exists():
        return here
    return Path(__file__).resolve().parents[2] / DEFAULT_CONFIG_NAME


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


def load(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None,
         warn: Any = _stderr, base: str | os.PathLike[str] | None = None) -> Settings:
    """Read, override and validate; raise `ConfigError` naming each offending key, with where it
    comes from (the file's line, or the environment variable that set it) and, for an unknown key,
    the closest known one. `warn(line)` gets one line per SMSBOT_* variable that matches no setting.

    Relative paths (``data_dir``, ``smsc.tls_ca_file``) are made absolute here, once, from `base`
    (default: the current directory, where the command started); `reload` reads the file again
    with the same base, so a daemon that changed to ``/`` still finds the same directories."""
    cfg_path = Path(path) if path else default_config_path()
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([("<file>", f"{cfg_path} not found")], str(cfg_path)) from None
    except yaml.YAMLError as e:
        raise yaml_error(cfg_path, e) from None
    if not isinstance(raw, dict):
        raise ConfigError([("<file>", "top level must be a mapping")], str(cfg_path))
    unknown: list[str] = []
    from_env: dict[str, str] = {}
    for keypath, value, var in env_overrides(environ, unknown):
        set_path(raw, keypath, value)
        from_env[".".join(keypath)] = var
    for line in unknown:
        warn(f"smsbot: warning: environment variable {line.split(';')[0]} matches no setting (ignored){''.join(line.partition(';')[1:])}")
    try:
        return from_dict(raw, source=str(cfg_path), base=base, environ=environ)
    except ConfigError as e:
        lines = yaml_lines(cfg_path.read_text(encoding="utf-8"))
        where = {key: locate(key, lines, from_env, str(cfg_path)) for key, _ in e.errors}
        raise ConfigError(e.errors, e.source, where) from None


def reload(settings: Settings, path: str | os.PathLike[str]) -> Settings:
    """`path` loaded again for a process running with `settings` (SIGHUP): relative paths are taken
    from where `settings` took theirs, whatever the current directory is now."""
    return load(path, base=settings._base)


def from_dict(raw: dict[str, Any], source: str = "", base: str | os.PathLike[str] | None = None,
              environ: dict[str, str] | None = None) -> Settings:
    """Validate `raw`; relative paths are taken from `base` (default: the current directory);
    `environ` (default: the process's) holds what ``secret_env`` settings name."""
    import copy

    raw = copy.deepcopy(raw)
    found: list[tuple[str, str]] = []
    for ext in installed():
        found += ext.migrate(raw)
    base = Path(base) if base is not None else Path.cwd()
    try:
        settings = Settings.model_validate(raw, context={"base": base, "environ": os.environ if environ is None else environ})
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = [str(p) for p in err["loc"]]
            msg = err["msg"]
            if err["type"] == "extra_forbidden":  # an unknown key: the closest known one
                fields = fields_at(loc[:-1])
                msg = f"unknown key {loc[-1]!r}" + (did_you_mean(loc[-1], fields) if fields else "")
                if fields:
                    msg += f" (known: {', '.join(fields)})" if "did you mean" not in msg else ""
            errors.append((".".join(loc) or "<root>", msg))
        raise ConfigError(errors, source) from None
    settings._notes = found  # the checks name a moved key where it was given (`extend`)
    problems = [p for ext in installed() for p in ext.check(settings)] + cross_checks(settings)
    if problems:
        raise ConfigError(problems, source)
    settings._base = base
    return settings
