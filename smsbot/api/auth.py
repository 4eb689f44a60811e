"""Bearer tokens, scopes and the per-token rate limit.

A token is configured as ``name:secret:scopes`` with scopes joined by ``+`` (``events``,
``notices``, ``read``, ``admin``, or ``*`` for all). The secret is compared with
`hmac.compare_digest` against every configured token (the time does not depend on which one
matches or how much of it does) and is never logged or echoed: logs and the audit carry the name.
Operations declare the scope they need with `Auth.scope`, which also declares the bearer scheme
in the OpenAPI document (``components.securitySchemes.bearer``), so the docs page can authorise.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SCOPES = ("events", "notices", "read", "admin")
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="a secret of api.tokens / SMSBOT_API_TOKENS (`name:secret:scopes`): send the secret")


@dataclass(frozen=True)
class Token:
    name: str
    digest: bytes  # sha256 of the secret: compare_digest on equal-length values
    scopes: frozenset[str]


def parse_tokens(entries: list[str]) -> list[Token]:
    out = []
    for e in entries:
        name, secret, scopes = e.split(":", 2)
        s = frozenset(SCOPES) if "*" in scopes.split("+") else frozenset(scopes.split("+"))
        out.append(Token(name, hashlib.sha256(secret.encode()).digest(), s))
    return out


class RateLimiter:
    """A token bucket per API token: `rate` requests a second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(name, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            if level >= 1:
                self._buckets[name] = (level - 1, now)
                return 0.0
            self._buckets[name] = (level, now)
            return (1 - level) / self.rate


class Auth:
    """The configured tokens and their rate limit; `scope(name)` is the dependency an operation
    declares (it also puts the bearer scheme in the OpenAPI document, so /docs can authorise)."""

    def __init__(self, entries: list[str], rate: float, burst: int):
        self.tokens = parse_tokens(entries)
        self.limiter = RateLimiter(rate, burst)

    def identify(self, secret: str | None) -> Token:
        if not secret or not secret.strip():
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})
        digest = hashlib.sha256(secret.strip().encode()).digest()
        found = None
        for t in self.tokens:  # every token compared: the time says nothing about which matched
            if hmac.compare_digest(t.digest, digest):
                found = t
        if found is None:
            raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return found

    def require(self, secret: str | None, scope: str) -> Token:
        tok = self.identify(secret)
        if scope not in tok.scopes:
            raise HTTPException(403, f"token {tok.name!r} lacks the scope {scope!r}")
        wait = self.limiter.take(tok.name)
        if wait > 0:
            raise HTTPException(429, f"rate limit of token {tok.name!r} exceeded", headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        return tok

    def scope(self, name: str) -> Any:
        """``tok: Token = auth.scope("read")``: the caller's token, which has the scope `name`."""
        async def token_with_scope(credentials: HTTPAuthorizationCredentials | None = Security(BEARER)) -> Token:
            return self.require(None if credentials is None else credentials.credentials, name)  # pure CPU: on the loop
        return Depends(token_with_scope)
