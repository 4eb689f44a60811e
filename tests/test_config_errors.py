"""Config errors a newcomer can act on (issue 14, item 8), through the real CLI: one line per problem
naming the key and the file's line or the environment variable, a "did you mean" for unknown keys,
exit 2 and no traceback; unknown SMSBOT_* variables warn and do not fail."""

import os
import subprocess
import sys

from .conftest import REPO

BASE = (REPO / "config.yaml").read_text(encoding="utf-8")


def check(cfg_text: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(cfg_text, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(path), "config", "check"],
                          capture_output=True, text=True, cwd=REPO, env={**clean, **env}, timeout=60)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_unknown_key_has_line_and_did_you_mean(tmp_path):
    text = BASE.replace("smsc:\n", "smsc:\n  prot: 2775\n", 1).replace("\nmenu:", "\nmneu:", 1)
    r = check(text, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"smsc.prot (line {line_of(text, 'prot: 2775')}): unknown key 'prot'; did you mean 'port'?" in r.stderr, r.stderr
    assert f"mneu (line {line_of(text, 'mneu:')}): unknown key 'mneu'; did you mean 'menu'?" in r.stderr, r.stderr


def test_bad_value_has_its_line(tmp_path):
    text = BASE.replace("  port: 2775", "  port: 70000", 1)
    r = check(text, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"smsc.port (line {line_of(text, 'port: 70000')}):" in r.stderr, r.stderr


def test_env_override_blames_the_variable(tmp_path):
    r = check(BASE, tmp_path, SMSBOT_SMSC_PORT="abc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    problems = [line for line in r.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 1 and problems[0].startswith("  smsc.port (environment variable SMSBOT_SMSC_PORT, not config.yaml):"), r.stderr
    assert "line" not in problems[0]


def test_log_level_any_case(tmp_path):
    assert check(BASE, tmp_path, SMSBOT_LOG_LEVEL="debug").returncode == 0
    text = BASE.replace("  level: INFO", "  level: Warning", 1)
    assert text != BASE
    r = check(text, tmp_path)
    assert r.returncode == 0, r.stderr
    r = check(BASE, tmp_path, SMSBOT_LOG_LEVEL="loud")
    assert r.returncode == 2 and "log.level (environment variable SMSBOT_LOG_LEVEL" in r.stderr


def test_unknown_smsbot_variable_warns(tmp_path):
    r = check(BASE, tmp_path, SMSBOT_SMCS_HOST="10.0.0.1", SMSBOT_NOTHING_LIKE_IT="1", SMSBOT_CONFIG="")
    assert r.returncode == 0, r.stderr
    assert ("smsbot: warning: environment variable SMSBOT_SMCS_HOST matches no setting (ignored); "
            "did you mean 'SMSBOT_SMSC_HOST'?") in r.stderr, r.stderr
    assert "SMSBOT_NOTHING_LIKE_IT matches no setting (ignored)" in r.stderr
    assert "SMSBOT_CONFIG" not in r.stderr


def with_templates(block: str) -> str:
    assert "templates: {}\n" in BASE
    return BASE.replace("templates: {}\n", "templates:\n" + block, 1)


def test_unknown_template_name_is_refused(tmp_path):
    text = with_templates("  zh-CN:\n    subscriptions.heder: \"您的业务：\"\n    menu_header: \"旧名\"\n")
    r = check(text, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert (f"templates.zh-CN.subscriptions.heder (line {line_of(text, 'subscriptions.heder')}): unknown template "
            "'subscriptions.heder'; did you mean 'subscriptions.header'?") in r.stderr, r.stderr
    assert "menu_header" not in r.stderr and "subscriptions.header (" not in r.stderr  # a former name is still accepted
    r = check(with_templates("  fr:\n    bill.empty: rien\n"), tmp_path)
    assert r.returncode == 2 and "templates.fr (line" in r.stderr and "unknown language 'fr'" in r.stderr, r.stderr


def test_template_that_cannot_be_sent_is_refused(tmp_path):
    huge = "长" * (67 * 256)  # UCS-2: 67 characters a part, so 256 parts even before the placeholders
    text = with_templates(f"  zh-CN:\n    bill.empty: \"{huge}{{x}}\"\n    bill.as_of: \"{{unclosed\"\n")
    r = check(text, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"templates.zh-CN.bill.empty (line {line_of(text, 'bill.empty')}): too long to send even with empty placeholders: text needs 256 parts (max 255)" in r.stderr, r.stderr
    assert "templates.zh-CN.bill.as_of (line" in r.stderr and "not a valid template" in r.stderr
    fits = with_templates(f"  zh-CN:\n    bill.empty: \"{'长' * (67 * 255)}\"\n")
    assert check(fits, tmp_path).returncode == 0


def test_run_refuses_a_template_that_cannot_be_sent(tmp_path):
    """Not only `config check`: `smsbot run` (and `smsbot api`) refuse to start on it, one line, exit 2."""
    path = tmp_path / "config.yaml"
    text = with_templates("  en:\n    bill.as_of: \"as of {unclosed\"\n").replace("data_dir: ", f"data_dir: {tmp_path}/var #", 1)
    path.write_text(text, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    for cmd in (["run"], ["api", "--port", "0"]):
        r = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(path), *cmd],
                           capture_output=True, text=True, cwd=REPO, env=clean, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (cmd, r.stderr)
        assert f"templates.en.bill.as_of (line {line_of(text, 'bill.as_of')}): not a valid template" in r.stderr, r.stderr
    assert not (tmp_path / "var").exists(), "nothing started, nothing written"


def test_service_name_that_cannot_be_sent_is_refused(tmp_path):
    import yaml

    raw = yaml.safe_load(BASE)
    first = raw["services"][0]["name"]
    text = BASE.replace(f"name: {first}", f"name: {'长' * (67 * 256)}", 1)
    assert text != BASE
    r = check(text, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "services.0.name (line" in r.stderr and "a reply naming it could never be sent: text needs 256 parts (max 255)" in r.stderr, r.stderr
