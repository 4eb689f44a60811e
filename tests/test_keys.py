"""All keys of one subscriber, and the streams its script writes, hash to one Redis Cluster slot."""

from hypothesis import given, strategies as st

from smsbot.keys import Keys


def crc16(data: bytes) -> int:  # Redis Cluster's CRC16 (XMODEM)
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key: str) -> int:
    s = key.find("{")
    if s != -1:
        e = key.find("}", s + 1)
        if e > s + 1:
            key = key[s + 1 : e]
    return crc16(key.encode()) % 16384


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.integers(min_value=1, max_value=1024))
def test_one_slot_per_subscriber(msisdn, shards):
    k = Keys("smsbot", shards)
    sk = k.subscriber(msisdn)
    shard = k.shard(msisdn)
    keys = [sk.subs, sk.guard_prefix + "abc", sk.outbox_prefix + "bot-1", k.own_outboxes("bot-1")[shard], sk.marks, sk.audit,
            k.conv(msisdn, "10086"), k.parts(msisdn, "10086", "7:2"), k.usage(msisdn), k.outbox_registry(shard),
            k.shared_outbox(shard), k.lease_prefix(shard) + "bot-1"]
    assert len({slot(x) for x in keys}) == 1
    assert sk.outbox_prefix + "bot-1" == k.own_outboxes("bot-1")[shard] and sk.marks == k.marks(shard)  # a cluster: one watermark key per shard


def test_shards_spread():
    k = Keys("smsbot", 16)
    shards = {k.shard(str(13800000000 + i)) for i in range(1000)}
    assert shards == set(range(16))


def test_one_outbox_sends_every_shards_replies_to_shard_0s_stream():
    """A single Redis: a sender's replies to every subscriber share one stream (one MINID trims
    them), a stream per sender; a cluster has one per sender and shard."""
    k = Keys("smsbot", 16, one_outbox=True)
    streams = {k.own_outboxes("bot-1")[k.shard(str(13800000000 + i))] for i in range(200)}
    assert streams == {"smsbot:{0}:outbox:bot-1"} and list(k.outbox_shards()) == [0]
    assert k.own_outboxes("bot-2")[3] == "smsbot:{0}:outbox:bot-2"
    cluster = Keys("smsbot", 16)
    assert cluster.own_outboxes("bot-1")[3] == "smsbot:{3}:outbox:bot-1" and len(cluster.outbox_shards()) == 16
    assert all(k.is_outbox(s) for s in ("smsbot:{0}:outbox:bot-1", "smsbot:{3}:outbox", "smsbot:{3}:outbox:a.1"))
    assert not any(k.is_outbox(s) for s in ("smsbot:{3}:queue", "smsbot:{3}:outboxes", "other:{3}:outbox:x"))
    assert {k.subscriber(str(13800000000 + i)).audit for i in range(200)} == set(k.all_audits())
    assert {k.subscriber(str(13800000000 + i)).marks for i in range(200)} == {k.marks(5)} == {"smsbot:{0}:marks"}
