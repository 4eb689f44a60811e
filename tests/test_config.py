"""Configuration: the shipped file is valid, env overrides, errors name the key, the CLI refuses bad configs."""

import subprocess
import sys

import pytest
import yaml

from smsbot import config

from .conftest import REPO


def test_shipped_config_is_valid():
    s = config.load(REPO / "config.yaml", environ={})
    assert s.short_codes[0].code == "10086"
    assert s.redis.url is None
    assert all(svc.price_fen > 0 for svc in s.services)


def test_env_overrides():
    s = config.load(
        REPO / "config.yaml",
        environ={
            "SMSBOT_SMSC_HOST": "10.1.2.3",
            "SMSBOT_SMSC_PORT": "2776",
            "SMSBOT_SMSC_SYSTEM_ID": "esme7",
            "SMSBOT_SMSC_PASSWORD": "pw",
            "SMSBOT_REDIS_URL": "redis://example:6379/0",
            "SMSBOT_DATA_DIR": "/srv/smsbot",
            "SMSBOT_SIMULATOR_SMPP_PORT": "3775",
            "SMSBOT_SIMULATOR_CONTROL_PORT": "9775",
        },
    )
    assert (s.smsc.host, s.smsc.port, s.smsc.system_id, s.smsc.password) == ("10.1.2.3", 2776, "esme7", "pw")
    assert s.redis.url == "redis://example:6379/0"
    assert str(s.data_dir) == "/srv/smsbot"
    assert (s.simulator.smpp_port, s.simulator.control_port) == (3775, 9775)


def test_errors_name_the_key(tmp_path):
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["smsc"]["port"] = 70000
    raw["short_codes"][0]["commands"] = ["subscriptions", "nosuch"]
    raw["services"][0]["price_fen"] = -1
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    keys = {k for k, _ in e.value.errors}
    assert "smsc.port" in keys and "services.0.price_fen" in keys
    raw["smsc"]["port"] = 2775
    raw["services"][0]["price_fen"] = 100
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    assert e.value.errors[0][0] == "short_codes.0.commands.1"


def test_cli_config_check(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(REPO / "config.yaml"), "config", "check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["smsc"]["port"] = "not-a-port"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True))
    for cmd in (["config", "check"], ["run"], ["catalog", "list"]):
        res = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(bad), *cmd], capture_output=True, text=True)
        assert res.returncode == 2
        assert "smsc.port" in res.stderr
        assert "Traceback" not in res.stderr
