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
    keys = [sk.subs, sk.guard_prefix + "abc", sk.outbox, sk.marks, sk.audit, k.conv(msisdn, "10086"), k.parts(msisdn, "10086", "7:2"),
            k.usage(msisdn)]
    assert len({slot(x) for x in keys}) == 1
    assert sk.outbox == k.outbox(k.shard(msisdn)) and sk.marks == k.marks(k.shard(msisdn))  # a cluster: one watermark key per shard


def test_shards_spread():
    k = Keys("smsbot", 16)
    shards = {k.shard(str(13800000000 + i)) for i in range(1000)}
    assert shards == set(range(16))


def test_one_outbox_sends_every_shards_replies_to_shard_0s_stream():
    """A single Redis: every subscriber's replies share one stream (one XDEL records many), while
    adoption and the lag gauges still see every shard's stream (entries written before)."""
    k = Keys("smsbot", 16, one_outbox=True)
    streams = {k.subscriber(str(13800000000 + i)).outbox for i in range(200)}
    assert streams == {k.outbox(0)} == {"smsbot:{0}:outbox"}
    assert k.all_outboxes() == Keys("smsbot", 16).all_outboxes() and len(k.all_outboxes()) == 16
    assert {k.subscriber(str(13800000000 + i)).audit for i in range(200)} == set(k.all_audits())
    assert {k.subscriber(str(13800000000 + i)).marks for i in range(200)} == {k.marks(5)} == {"smsbot:{0}:marks"}
