"""SMPP over TLS: the simulator's port wrapped in TLS with a test CA and certificates made here.

With `smsc.tls: true` and `tls_verify: true` the bot must check the certificate chain AND the host
name (issue 10 item 9: smpplib wraps the socket without `server_hostname`, so a verifying context
can never connect); with `tls_verify: false` it binds to a self-signed certificate.

The CA is trusted through `smsc.tls_ca_file` when the config has that key, else through the
SSL_CERT_FILE environment variable (read by `ssl.create_default_context()` in this process).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import struct
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smsbot import config
from smsbot.app import Bot
from smsbot.config import SimulatorSettings, SmscSettings
from smsbot.simulator.smsc import SimSmsc

from .conftest import World
from .helpers import wait_until

MSISDN = "13800138000"
MENU_HEAD = "尊敬的客户，您已订购的包月业务如下："
HAS_CA_FILE_KEY = "tls_ca_file" in SmscSettings.model_fields


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def self_signed_context(tmp_path: Path, name: str = "127.0.0.1") -> ssl.SSLContext:
    """A server context with a self-signed certificate (no CA behind it) for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simsmsc self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "self.pem", tmp_path / "self.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trust(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Config overrides (and environment) that make the bot trust `ca`."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    if HAS_CA_FILE_KEY:
        return {"smsc.tls_ca_file": str(path)}
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return {}


@pytest.fixture
def make_tls_world(make_settings: Callable[..., config.Settings]) -> Iterator[Callable[..., World]]:
    """A simulator speaking TLS with `ctx`, and a bot configured with `overrides` (started only
    when `bind` is true: then it must bind within 10 s)."""
    worlds: list[World] = []

    def make(ctx: ssl.SSLContext, bind: bool = True, **overrides: Any) -> World:
        settings = make_settings(**{"smsc.tls": True, **overrides})
        w = World(settings, SimSmsc.from_settings(settings, ssl_context=ctx).start())
        worlds.append(w)
        if bind:
            bot = Bot(w.bot_settings()).start()
            w.bots.append(bot)
            if not bot.wait_bound(10):
                # stopped before failing: a bot retrying in a loop logs tracebacks, and Python 3.11
                # formatting two tracebacks at once (its thread, pytest's report) can crash pytest
                bot.stop()
                pytest.fail("the bot did not bind over TLS")
        return w

    yield make
    for w in worlds:
        w.stop()


def bot_not_binding(w: World, seconds: float = 3.0) -> None:
    """Run a bot that must NOT bind for `seconds`, then stop it (before anything is asserted: see
    `make_tls_world`)."""
    bot = Bot(w.bot_settings()).start()
    try:
        bound = bot.wait_bound(seconds)
    finally:
        bot.stop()
    assert not bound, "the bot bound although the certificate must be refused"


# ------------------------------------------------------------------------------------------------
# the simulator's side alone


def _read_pdu(s: socket.socket) -> tuple[int, int, int, bytes]:
    buf = b""
    while len(buf) < 16:
        chunk = s.recv(16 - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    length, cid, status, seq = struct.unpack(">IIII", buf)
    body = b""
    while len(body) < length - 16:
        chunk = s.recv(length - 16 - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return cid, status, seq, body


def _pdu(cid: int, seq: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def test_simulator_serves_smpp_over_tls(ca: trustme.CA):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    sim = SimSmsc(SimulatorSettings(host="127.0.0.1", smpp_port=0, control_port=0, redeliver_seconds=0.2),
                  SmscSettings(system_id="smsbot", password="secret"), response_timeout=1.0,
                  ssl_context=server_context(cert)).start()
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        with socket.create_connection(("127.0.0.1", sim.smpp_port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(_pdu(0x09, 1, b"smsbot\0secret\0\0\x34\0\0\0"))
            assert _read_pdu(s)[:3] == (0x80000009, 0, 1)
            mo = sim.inject_mo(MSISDN, "10086", "0000")["id"]
            cid, _st, seq, body = _read_pdu(s)
            assert cid == 0x05 and b"0000" in body
            s.sendall(_pdu(0x80000005, seq, b"\0"))
            assert sim.wait_mo(mo)["state"] == "delivered"
            s.sendall(_pdu(0x15, 2))
            assert _read_pdu(s)[:3] == (0x80000015, 0, 2)
            assert sim.drop_connections() == 1
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                _read_pdu(s)
        # a client that does not trust the CA never gets a bind
        with socket.create_connection(("127.0.0.1", sim.smpp_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
        assert wait_until(lambda: sim.stats()["tls_handshake_failures"] >= 1, 5), sim.stats()
        st = sim.stats()
        assert st["tls_handshakes"] == 1 and st["tls_handshake_failures"] == 1 and st["binds_total"] == 1, st
    finally:
        sim.stop()


# ------------------------------------------------------------------------------------------------
# the bot


def test_bot_binds_over_tls_with_verification(make_tls_world: Callable[..., World], ca: trustme.CA,
                                              trust: dict[str, Any]):
    """Issue 10 item 9: verification on (chain and host name), the test CA trusted: binds, answers 0000."""
    w = make_tls_world(server_context(ca.issue_cert("127.0.0.1", "localhost")), **{"smsc.tls_verify": True}, **trust)
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = w.handset(MSISDN)
    menu = phone.ask("0000")
    assert menu.startswith(MENU_HEAD) and "2. 彩铃音乐包" in menu, menu
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
    st = w.sim.stats()
    assert st["tls_handshakes"] >= 1 and st["tls_handshake_failures"] == 0, st


def test_bot_refuses_a_certificate_from_an_untrusted_ca(make_tls_world: Callable[..., World], ca: trustme.CA):
    """Verification on and the CA not trusted: the handshake fails, nothing is bound."""
    w = make_tls_world(server_context(ca.issue_cert("127.0.0.1")), bind=False, **{"smsc.tls_verify": True})
    bot_not_binding(w)
    st = w.sim.stats()
    assert st["binds_total"] == 0 and st["tls_handshake_failures"] >= 1, st


def test_bot_refuses_a_certificate_for_another_host(make_tls_world: Callable[..., World], ca: trustme.CA,
                                                    trust: dict[str, Any]):
    """Verification on, CA trusted, but the certificate names another host: no bind (the host
    name is checked, not only the chain)."""
    w = make_tls_world(server_context(ca.issue_cert("smsc.example.net")), bind=False,
                       **{"smsc.tls_verify": True}, **trust)
    bot_not_binding(w)
    st = w.sim.stats()
    assert st["binds_total"] == 0 and st["tls_handshake_failures"] >= 1, st


def test_bot_binds_to_a_self_signed_certificate_without_verification(make_tls_world: Callable[..., World],
                                                                     tmp_path: Path):
    """`tls_verify: false`: a self-signed certificate is accepted; TLS is still used."""
    w = make_tls_world(self_signed_context(tmp_path), **{"smsc.tls_verify": False})
    w.subscribe(MSISDN, "VIDEO")
    assert w.handset(MSISDN).ask("0000").startswith(MENU_HEAD)
    assert w.sim.stats()["tls_handshakes"] >= 1


def test_self_signed_certificate_refused_with_verification(make_tls_world: Callable[..., World], tmp_path: Path):
    w = make_tls_world(self_signed_context(tmp_path), bind=False, **{"smsc.tls_verify": True})
    bot_not_binding(w)
    st = w.sim.stats()
    assert st["binds_total"] == 0 and st["tls_handshake_failures"] >= 1, st
