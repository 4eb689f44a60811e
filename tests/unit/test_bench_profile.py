"""`bench.profile`'s readings of what Redis, strace and MONITOR report, on their real output formats."""

from __future__ import annotations

import pytest

from bench.profile import commandstats_delta, mo_samples, strace_summary

pytestmark = pytest.mark.unit


def test_commands_per_mo_leave_out_the_profiles_own_info():
    before = {"total_commands_processed": 100, "cmdstat_info": {"calls": 3, "usec": 30},
              "cmdstat_evalsha": {"calls": 10, "usec": 200}}
    after = {"total_commands_processed": 100 + 1 + 5 * 20, "cmdstat_info": {"calls": 4, "usec": 40},
             "cmdstat_evalsha": {"calls": 30, "usec": 600}, "cmdstat_mget": {"calls": 20, "usec": 40}}
    got = commandstats_delta(before, after, mos=20)
    assert got["commands_per_mo"] == 5.0
    assert got["by_command"] == {"evalsha": {"calls_per_mo": 1.0, "usec_per_mo": 20.0, "usec_per_call": 20.0},
                                 "mget": {"calls_per_mo": 1.0, "usec_per_mo": 2.0, "usec_per_call": 2.0}}


def test_monitor_lines_group_a_scripts_inner_commands_under_it():
    lines = [
        '1.1 [0 unix:/r.sock] "DEL" "g1"',
        '1.2 [0 unix:/r.sock] "EVALSHA" "abc" "9" "k1"',
        '1.2 [0 lua] "MGET" "g" "l" "v"',
        '1.2 [0 lua] "SET" "c" "x"',
        '1.2 [0 lua] "XADD" "o" "*"',
        '1.2 [0 lua] "SET" "g" "y"',
        '1.3 [0 unix:/r.sock] "EVALSHA" "abc" "9" "k2"',
        '1.3 [0 lua] "MGET" "g" "l" "v"',
    ]
    groups = mo_samples(lines, 1)
    assert ['"EVALSHA" "abc" "9" "k1"', '    "MGET" "g" "l" "v"', '    "SET" "c" "x"', '    "XADD" "o" "*"',
            '    "SET" "g" "y"'] in groups


def test_strace_table_becomes_calls_per_mo():
    table = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.004000           2      2000           poll
 30.00    0.003000           3      1000           sendto
------ ----------- ----------- --------- --------- ----------------
100.00    0.007000                  3000           total
"""
    assert strace_summary(table, mos=1000) == {"poll": {"calls_per_mo": 2.0, "seconds": 0.004},
                                               "sendto": {"calls_per_mo": 1.0, "seconds": 0.003}}
