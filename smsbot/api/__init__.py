"""The HTTP API for the operator's systems (issue 12): orders, uses, usage reports, notices,
subscriptions, MT records and status, as JSON over HTTP (FastAPI + uvicorn; OpenAPI at
``/openapi.json``, interactive docs at ``/docs``).

* `smsbot.api.app` builds the app (`create_app`) and serves it (`serve`);
* `smsbot.api.auth`: bearer tokens ``name:token:scopes`` (``api.tokens`` / ``SMSBOT_API_TOKENS``),
  compared in constant time and never logged; 401 without a valid token, 403 without the scope,
  429 over the per-token rate (a token bucket per token, per process);
* `smsbot.api.models`: request and response models (the OpenAPI schemas);
* `smsbot.api.routes`: the endpoints. Every write reuses the CLI's writers (`smsbot.events`,
  `commands.usage.event_fields`, `smsbot.admin`), so an event from the API is the event the CLI
  writes; orders and uses are idempotent on their id (one Lua step: the first result is kept).

The API is stateless apart from the rate buckets: several API processes and bot instances may
share one Redis.
"""
