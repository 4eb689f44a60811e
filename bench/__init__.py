"""smsbot's benchmark harness: MO->MT round trips per second, latency, RSS and Redis cost.

Run ``python -m bench --help``. The package is split by ownership:

* `bench.load_smsc` - the SMPP load generator / fake SMSC and the measurement (window, matching);
* `bench.baseline_smpplib` - the bare smpplib ESME the results are compared with;
* `bench.sut` - starting/stopping the systems under test (the only place that knows how to launch
  smsbot, its Redis and the seeding);
* `bench.report` - result rows, the printed table and the JSON file;
* `bench.__main__` - the CLI and the plan.

Importing this package has no side effects and imports nothing heavy.
"""
