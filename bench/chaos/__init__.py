"""The chaos suite of issue 11: "nothing lost, nothing twice" under faults.

``python -m bench.chaos [--quick] [--json FILE] [--only abd]`` runs scenarios (a) no faults,
(b) link drops every 0.5 s, (c) Redis SIGSTOP then kill -9 + restart, (d) two bot kill -9 with
restart, (e) all together, (f) an order burst with a bot kill right after it, (g) a billing run
killed mid-run and run again, and prints one JSON row per scenario.

Modules:

* `smsc`   — the chaos SMSC: its own SMPP 3.4 framing (no smsbot code), redelivers every MO not
             acknowledged, drops links, joins concatenated replies, counts replies per subscriber
             (answered, twice, wrong) and charge reminders per (subscriber, service);
* `model`  — the independent model: the 0000 conversation, orders, billing rules; reading replies;
             comparing Redis with it;
* `state`  — reads smsbot's Redis keys (layout of ``smsbot/keys.py``) for the comparison;
* `procs`  — the bundled Redis, the ``smsbot run`` bots and CLI commands as child processes;
* `runner` — the scenarios, their fault timelines, settling, the row and its targets.

The bot is only ever talked to through its public surfaces: the ``smsbot`` CLI with a config
file of its own, Redis (the documented key layout and the orders stream), and SMPP.
"""
