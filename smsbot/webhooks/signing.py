"""How a webhook request is signed, and the names of the headers it carries.

The signature is HMAC-SHA256 over the raw request body (the exact bytes sent) with the endpoint's
secret, hex-encoded and prefixed with the algorithm: ``X-Smsbot-Signature: sha256=<64 hex digits>``.
A receiver computes the same over the bytes it received and compares in constant time (`verify`;
the README has the same few lines for receivers). The body carries the event id and time, so a
verified body is also the idempotency key and the age of the event.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Smsbot-Signature"
EVENT_HEADER = "X-Smsbot-Event"  # the event type, e.g. subscription.cancelled
IDEMPOTENCY_HEADER = "Idempotency-Key"  # the event id, also the body's "id"
ATTEMPT_HEADER = "X-Smsbot-Attempt"  # 1 for the first attempt, then 2, 3, ...
PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """True when `signature` is `body`'s, made with `secret` (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, body), signature or "")
