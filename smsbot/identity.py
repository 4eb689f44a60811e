"""A sender's identity, as a value: who the replies an MO script stores belong to.

`smsbot.delivery` owns it and makes a new one when it changes; the pipeline prepares every batch
for the identity current at that moment, and `smsbot.store` writes it into the MO script's call.

* ``consumer``: the sender's name in the outbox (``own``) and the queue's consumer group; a new
  one after the lease was lost (the old name is then dead to every instance);
* ``session``: counts the SMPP sessions (binds, and round trips whose outcome is unknown) of this
  consumer; ``token`` = consumer/session marks the redelivery guards an MO leaves, so an MO met
  again in another session is recognised (lua/main.lua);
* ``lease_prefixes``: each shard's lease key prefix; ``lease_key(shard)`` is the key whose
  existence makes an MO's replies this sender's own (checked inside the script).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    consumer: str
    lease_prefixes: tuple[str, ...] = ()
    session: int = 1
    token: str = field(init=False)  # consumer/session, made once (every MO's call carries it)
    lease_keys: tuple[str, ...] = field(init=False)  # per shard

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", f"{self.consumer}/{self.session}")
        object.__setattr__(self, "lease_keys", tuple(p + self.consumer for p in self.lease_prefixes))

    def lease_key(self, shard: int) -> str:
        return self.lease_keys[shard]

    def next_session(self) -> SenderIdentity:
        return replace(self, session=self.session + 1)

    def renamed(self, consumer: str) -> SenderIdentity:
        """A new consumer (the lease was lost): its sessions count from the next one on."""
        return replace(self, consumer=consumer, session=self.session + 1)
