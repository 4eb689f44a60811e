"""Webhooks: what smsbot learns first, POSTed to the operator's systems (config ``webhooks:``).

How an event travels (README, "Webhooks"):

1. It is written durably where its record already lives: every subscription and ticket change is
   an entry of its shard's audit stream (the Lua steps write them); a delivery receipt and a
   rejected notice are one XADD to ``<prefix>:{webhooks}:in`` in the SMS path's own round trip
   (`smsbot.webhooks.events`).
2. The collector (`smsbot.webhooks.collector`) of one bot instance reads those streams through the
   consumer group ``webhooks`` (each entry to one instance), turns an entry into an event with a
   stable id and a JSON body, and stores one delivery job per endpoint that wants it
   (`smsbot.webhooks.jobs`), then acknowledges the entry.
3. Senders (`smsbot.webhooks.sender`, own threads and HTTP connections, a fixed number per
   endpoint) take due jobs under a lease and POST them, signed (`smsbot.webhooks.signing`);
   a failure is retried later with exponential backoff and jitter (`smsbot.webhooks.backoff`),
   then dead-lettered.

`smsbot.webhooks.service` assembles the collector and the senders for one bot (`smsbot.app`).
Nothing here runs inside an MO's round trip except the one XADD of step 1.
"""
