"""Config files for smsbot run as a process (`smsbot run`, the daemon, one-shot commands): the test
config of a bot bound to a simulator, as a dict to change, and that dict written as the YAML file
the process reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smsbot.simulator.smsc import SimSmsc

from .conftest import base_config


def make_raw(redis_url: str, tmp_path: Path, sim: SimSmsc, **extra: Any) -> dict[str, Any]:
    """The test config (`base_config`) for a bot of `sim` on `redis_url`, logging at INFO, with
    `extra` settings ("section.key": value)."""
    raw = base_config(redis_url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    for dotted, value in extra.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    return raw


def write_cfg(path: Path, raw: dict[str, Any]) -> Path:
    """`raw` as the YAML config file `path`; the path."""
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def write_cfg_in(directory: Path, raw: dict[str, Any], name: str = "config.yaml") -> Path:
    """`raw` as the YAML config file `name` in `directory`; its path."""
    return write_cfg(directory / name, raw)
