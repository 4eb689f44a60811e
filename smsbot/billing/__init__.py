"""Billing: the run that charges monthly subscriptions, the ledger, and its verification. A
package of one module per concept (rules, run, runs, uses, ledger, verify); this is its API.

* **Rules** (``smsbot/lua/billing_rules.lua``): THE definition of what is charged and when, as
  pure Lua functions. The billing steps (``smsbot/lua/billing.lua``: ``billing.charge_period``,
  ``billing.charge_use``) and the orders command (is a cancel free?) run them inside their atomic
  step; `verify` evaluates the very same functions in Redis (`Rules`), so the check and the steps
  cannot drift apart. `lua_fragment` is what the command registry hands to the store.
* **Run** (`run`, `BillingRun`): every subscriber with a subscription hash (SCAN) gets one
  ``billing.charge_period`` step for the period (calendar month in ``billing.timezone``) that
  holds the run's time; the steps go out in pipelined batches of ``billing.batch``. A charge is the
  ledger field ``<code>:<YYYY-MM>`` written with HSETNX in the same atomic step as its audit
  entry, so overlapping runs, a run killed halfway and restarted, or a run repeated, can never
  charge a subscription twice for one period. Every run is recorded (``<prefix>:billing:runs``).
* **Runs survive being killed.** A run holds a lease (``<prefix>:billing:runs:lease:<run id>``,
  a key with a TTL of ``lease_s``, renewed by a thread while the run works) and checkpoints its
  progress after every batch (subscribers are billed in MSISDN order; the record keeps the last
  one done and the counts so far). A later run for the same period that finds an unfinished run
  whose lease is gone (killed with kill -9, the host died, or interrupted) **resumes** it: same
  run id, same time, from the checkpoint; the batch in flight when it died is billed again, which
  is harmless (HSETNX) and shows up as ``already_charged``. A run whose lease is alive is another
  process at work: a new run overlaps it (safe). A run that completes **supersedes** the unfinished
  runs of its period it covers (same or earlier time, started no later). States (`list_runs`):
  ``running`` (lease alive), ``abandoned`` (unfinished, lease expired: resumable), ``interrupted``
  (stopped on purpose or by a Redis failure: resumable at once), ``finished``, ``superseded``.
* **Ledger** (`ledger`): a subscriber's charges, ``<prefix>:{N}:ledger:<msisdn>``.
* **Verify** (`verify`): replays the audit streams into the subscriptions' history (order, due
  time, cancellation) and checks the ledger against it and against the charge entries in the
  audit streams: every charge justified by the rules (``billing_rules.lua``), none for a
  subscription cancelled before its first charge, one audit entry per charge and vice versa, the
  catalogue price, and no charge missing for a finished run or an applied use event.
"""


from smsbot.billing.ledger import Charge, StatementLine, ledger, statement
from smsbot.billing.rules import CHARGE_PERIOD, CHARGE_USE, LIVE, RULES_LUA, Incarnation, Rules, lua_fragment
from smsbot.billing.run import (LEASE_SECONDS, BillingInterrupted, BillingRun, BillingStopped, LeaseLost, Summary,
                                run)
from smsbot.billing.runs import RunRecord, list_runs
from smsbot.billing.uses import Use, event_common, parse_use, use_call
from smsbot.billing.verify import Report, history, verify

__all__ = [
    "CHARGE_PERIOD", "CHARGE_USE", "LEASE_SECONDS", "LIVE", "RULES_LUA", "BillingInterrupted", "BillingRun",
    "BillingStopped", "Charge", "Incarnation", "LeaseLost", "Report", "Rules", "RunRecord", "StatementLine",
    "Summary", "Use", "event_common", "history", "ledger", "list_runs", "lua_fragment", "parse_use", "run",
    "statement", "use_call", "verify",
]
