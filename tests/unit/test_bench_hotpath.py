"""`bench.hotpath`: the harness runs the bot's per-MO path end to end (every MO answered with its
2-part menu, every part sent and accepted) and reports each stage in µs per MO."""

from __future__ import annotations

import json

import pytest

from bench import hotpath

pytestmark = pytest.mark.unit


def test_every_stage_is_timed_per_mo_and_the_figures_are_written(tmp_path):
    out = tmp_path / "hotpath.json"
    assert hotpath.main(["--batches", "3", "--repeat", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    stages = res["us_per_mo_best"]
    assert list(stages) == ["read", "prepare", "commands", "finish", "outbox", "resps"]
    assert all(v > 0 for v in stages.values())
    assert res["total_best_stagewise"] == pytest.approx(sum(stages.values()), abs=0.05)
    assert (res["batches"], res["repeat"], len(res["total_runs"])) == (3, 2, 2)


def test_bad_arguments_get_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        hotpath.main(["--batches", "0"])
    assert e.value.code == 2 and "--batches and --repeat must be >= 1" in capsys.readouterr().err
