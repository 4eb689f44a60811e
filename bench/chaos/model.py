"""An independent model of what the conversations, the subscriptions and the ledger must be.

Nothing here imports smsbot. It is written from the README ("What a subscriber sees", "Charge
reminders and billing") and knows the catalogue only from the config file the runner writes.

Conversation (the 0000 menu)
    A subscriber seeded with services S1..Sn (in that order, ``smsbot subs seed``) has them live
    in menu order. ``0000``/``00000``: no live service -> the "no services" reply and no menu;
    otherwise the numbered menu of the live services, which stays open (24 h) and replaces any
    earlier one. Numbers (``1``, ``1 3``, ``1，3``, full width) while a menu is open: any number
    out of 1..n -> the "reply 1 to n" notice, nothing changes; otherwise each distinct number
    cancels that item of THAT menu if it is still live (one cancellation, one audit entry), or
    says it is already cancelled; the menu stays open. Numbers without a menu -> the "no open
    menu, send 0000" notice (template ``no_menu``; the README calls it a short help). HELP and
    unknown text -> the help text. (Scripts never send other text while a menu is open.)

    The script every subscriber follows (`SCRIPT`, then `TAIL` forever) walks through menu,
    cancel, already-cancelled, out of range, empty menu, a number without a menu and help: with
    VIDEO, MUSIC, NEWS seeded the expected replies are menu[V,M,N], cancel V, already V, menu[M,N],
    cancel N, invalid(2), menu[M], cancel M, empty, no-menu, help, then empty/no-menu/help.

Orders and reminders
    An order event for a service the subscriber does not have live creates ONE pending
    subscription (one ``order`` audit entry, the order id recorded) and ONE charge reminder to the
    subscriber; replaying the same order id changes nothing.

Billing (monthly services; a run at time T bills the calendar month P holding T, in
``billing.timezone``)
    A subscription is charged once for P (ledger field ``<code>:<P>``, the catalogue price, one
    ``charge`` audit entry) when its first charge is due by T (seeded: at once; ordered: order
    time + ``billing.grace_seconds``) and it is live, or was cancelled at or after both its due
    time and the start of P. Otherwise it is not charged. A cancellation's exact time is known
    only to lie between the MO's first send and its acknowledgement; when the start of P falls
    inside that interval either outcome is accepted.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

SCRIPT = ("0000", "1", "1", "0000", "2", "5", "0000", "1", "0000", "1", "HELP")
TAIL = ("0000", "1", "HELP")
SEED_CODES = ("VIDEO", "MUSIC", "NEWS")

MENU, CANCELLED, INVALID, EMPTY, HELP, NO_MENU, EXPIRED, REMINDER, OTHER = (
    "menu", "cancelled", "invalid", "empty", "help", "no_menu", "expired", "reminder", "other")


def script_text(k: int) -> str:
    return SCRIPT[k] if k < len(SCRIPT) else TAIL[(k - len(SCRIPT)) % len(TAIL)]


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().upper()


_NUMBERS = re.compile(r"\d+(?:[\s,，、;]+\d+)*")


def numbers(norm: str) -> list[int] | None:
    if not _NUMBERS.fullmatch(norm):
        return None
    return [int(x) for x in re.split(r"[\s,，、;]+", norm) if x]


@dataclass(frozen=True)
class Reply:
    """What a reply says, as far as the model cares."""

    kind: str
    items: tuple[str, ...] = ()  # menu: service names in order
    cancelled: tuple[str, ...] = ()  # names
    already: tuple[str, ...] = ()
    n: int = 0  # invalid: the valid range 1..n
    service: str = ""  # reminder: the service name


class Catalogue:
    def __init__(self, services: Iterable[dict[str, Any]], language: str = "zh-CN"):
        self.services = {s["code"]: s for s in services}
        self.en = language.lower().startswith("en")

    def name(self, code: str) -> str:
        s = self.services[code]
        return (s.get("name_en") or s["name"]) if self.en else s["name"]

    def price(self, code: str) -> int:
        return int(self.services[code]["price_fen"])

    def kind(self, code: str) -> str:
        return str(self.services[code].get("kind", "monthly"))


# -- reading replies ----------------------------------------------------------------------------------
_ZH = {
    "reminder": re.compile(r"【扣费提醒】.*?您已订购(.+?)，资费"),
    "menu": "您已订购的包月业务如下",
    "empty": "没有订购任何包月",
    "invalid": re.compile(r"回复内容有误，请回复1至(\d+)"),
    "help": "欢迎使用",
    "no_menu": "没有待回复的菜单",
    "expired": "已过期",
    "cancelled": re.compile(r"您已成功退订(.+?)。"),
    "already": re.compile(r"([^\n。]+?)已退订，无需重复操作"),
}
_EN = {
    "reminder": re.compile(r"Charge reminder: you ordered (.+?) at "),
    "menu": "Your monthly services:",
    "empty": "no monthly value-added services",
    "invalid": re.compile(r"reply with a number from 1 to (\d+)"),
    "help": "Welcome to",
    "no_menu": "There is no open menu",
    "expired": "has expired",
    "cancelled": re.compile(r"Cancelled: (.+?)\."),
    "already": re.compile(r"([^\n]+?) was already cancelled\."),
}
_ITEM = re.compile(r"^\s*(\d+)\.\s*(.+?)\s+\S+$", re.M)


def classify(text: str) -> Reply:
    """Read a received message (either language)."""
    for t in (_ZH, _EN):
        m = t["reminder"].search(text)
        if m:
            return Reply(REMINDER, service=m.group(1).strip())
        if t["menu"] in text:
            return Reply(MENU, items=tuple(name for _, name in _ITEM.findall(text)))
        if t["empty"] in text:
            return Reply(EMPTY)
        m = t["invalid"].search(text)
        if m:
            return Reply(INVALID, n=int(m.group(1)))
        cancelled = tuple(x.strip() for x in t["cancelled"].findall(text))
        already = tuple(x.strip() for x in t["already"].findall(text))
        if cancelled or already:
            return Reply(CANCELLED, cancelled=cancelled, already=already)
        if t["no_menu"] in text:
            return Reply(NO_MENU)
        if t["help"] in text:
            return Reply(HELP)
        if t["expired"] in text:
            return Reply(EXPIRED)
    return Reply(OTHER)


# -- one subscriber's conversation -------------------------------------------------------------------
class SubscriberModel:
    def __init__(self, catalogue: Catalogue, codes: Iterable[str] = SEED_CODES):
        self.cat = catalogue
        self.live: list[str] = list(codes)
        self.state: dict[str, str] = {c: "active" for c in self.live}
        self.menu: list[str] | None = None
        self.cancels: Counter[str] = Counter()
        self.cancel_mo: dict[str, int] = {}  # code -> index of the MO that cancelled it

    def apply(self, text: str, k: int = -1) -> Reply:
        norm = normalize(text)
        if norm in ("0000", "00000"):
            if not self.live:
                self.menu = None
                return Reply(EMPTY)
            self.menu = list(self.live)
            return Reply(MENU, items=tuple(self.cat.name(c) for c in self.menu))
        nums = numbers(norm)
        if nums is not None and self.menu is not None:
            n = len(self.menu)
            if any(x < 1 or x > n for x in nums):
                return Reply(INVALID, n=n)
            cancelled, already, seen = [], [], set()
            for x in nums:
                if x in seen:
                    continue
                seen.add(x)
                code = self.menu[x - 1]
                if self.state.get(code) == "active":
                    self.state[code] = "cancelled"
                    self.live.remove(code)
                    self.cancels[code] += 1
                    self.cancel_mo[code] = k
                    cancelled.append(self.cat.name(code))
                else:
                    already.append(self.cat.name(code))
            return Reply(CANCELLED, cancelled=tuple(cancelled), already=tuple(already))
        if nums is not None:
            return Reply(NO_MENU)
        return Reply(HELP)


def reply_matches(expected: Reply, text: str) -> bool:
    got = classify(text)
    if got.kind != expected.kind:
        return False
    if got.kind == MENU:
        return got.items == expected.items
    if got.kind == CANCELLED:
        return sorted(got.cancelled) == sorted(expected.cancelled) and sorted(got.already) == sorted(expected.already)
    if got.kind == INVALID:
        return got.n == expected.n
    return True


class ChaosConversation:
    """The `bench.chaos.smsc.Conversation` the chaos SMSC drives: the script, the expected reply of
    each MO (the model applied as the MO is first sent) and the reminder classifier."""

    def __init__(self, catalogue: Catalogue, codes: Iterable[str] = SEED_CODES):
        self.cat = catalogue
        self.codes = tuple(codes)
        self.models: dict[str, SubscriberModel] = {}

    def next_text(self, msisdn: str, k: int) -> str:
        return script_text(k)

    def expect(self, msisdn: str, text: str) -> Reply:
        m = self.models.get(msisdn)
        if m is None:
            m = self.models[msisdn] = SubscriberModel(self.cat, self.codes)
        return m.apply(text)

    def matches(self, expected: Reply, text: str) -> bool:
        return reply_matches(expected, text)

    def reminder_key(self, text: str) -> str | None:
        if "扣费提醒" not in text and "Charge reminder" not in text:
            return None
        r = classify(text)
        return r.service if r.kind == REMINDER else "?"


# -- comparing with what Redis holds -----------------------------------------------------------------
@dataclass
class StateReport:
    checked_subscribers: int = 0
    ambiguous: int = 0  # last MO never acknowledged: either outcome accepted
    double_effects: int = 0  # (subscriber, service) with more cancellations/orders than the model
    lost_effects: int = 0  # (subscriber, service) with fewer
    state_mismatch: int = 0  # (subscriber, service) whose stored state differs from the model
    conv_mismatch: int = 0  # open menu (items) differs from the model
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 12:
            self.examples.append(text)


def replay(cat: Catalogue, mos: list[tuple], codes: Iterable[str] = SEED_CODES, include_last_unacked: bool = False) -> SubscriberModel:
    """The model after the subscriber's acknowledged MOs (`mos`: (text, acked, rejected, ...))."""
    m = SubscriberModel(cat, codes)
    for k, mo in enumerate(mos):
        text, acked, rejected = mo[0], mo[1], mo[2]
        if acked or (include_last_unacked and k == len(mos) - 1 and not rejected):
            m.apply(text, k)
    return m


def compare_conversations(cat: Catalogue, subscribers: dict[str, list[tuple]], view: Any,
                          codes: Iterable[str] = SEED_CODES, report: StateReport | None = None) -> StateReport:
    """Stored subscriptions, cancellation audit entries and the open menu of every subscriber that
    sent an MO, against the model. `view` gives subs(msisdn) -> {code: state},
    cancel_audits(msisdn) -> Counter{code: n} and menu(msisdn) -> [codes] | None | 'unknown'."""
    rep = report or StateReport()
    codes = tuple(codes)
    for msisdn, mos in subscribers.items():
        rep.checked_subscribers += 1
        candidates = [replay(cat, mos, codes)]
        last = mos[-1]
        if not last[1] and not last[2]:  # the last MO was never acknowledged: it may or may not have run
            rep.ambiguous += 1
            candidates.append(replay(cat, mos, codes, include_last_unacked=True))
        stored = view.subs(msisdn)
        audits = view.cancel_audits(msisdn)
        menu = view.menu(msisdn)

        def diffs(m: SubscriberModel) -> tuple[int, int, int, int, list[str]]:
            dbl = lost = mism = 0
            notes = []
            for code in codes:
                exp_state, exp_n = m.state.get(code, "none"), m.cancels[code]
                got_state, got_n = stored.get(code, "none"), audits.get(code, 0)
                if got_n > exp_n or (exp_state == "active" and got_state == "cancelled"):
                    dbl += 1
                    notes.append(f"{msisdn} {code}: double effect (cancelled {got_n}x, model {exp_n}x; state {got_state})")
                elif got_n < exp_n or (exp_state == "cancelled" and got_state in ("active", "pending")):
                    lost += 1
                    notes.append(f"{msisdn} {code}: lost effect (cancelled {got_n}x, model {exp_n}x; state {got_state})")
                if got_state != exp_state:
                    mism += 1
            conv = 0
            if menu != "unknown":
                exp_menu = m.menu
                if (menu or None) != (exp_menu or None):
                    conv = 1
                    notes.append(f"{msisdn}: open menu {menu}, model {exp_menu}")
            return dbl, lost, mism, conv, notes

        results = [diffs(m) for m in candidates]
        best = min(results, key=lambda r: r[0] + r[1] + r[2] + r[3])
        rep.double_effects += best[0]
        rep.lost_effects += best[1]
        rep.state_mismatch += best[2]
        rep.conv_mismatch += best[3]
        for n in best[4]:
            rep.note(n)
    return rep


def compare_orders(orders: list[dict[str, Any]], view: Any, report: StateReport | None = None,
                   expect_state: dict[str, str] | None = None) -> StateReport:
    """Every order (msisdn, code, order_id) applied once: its id recorded, one ``order`` audit
    entry, the subscription live (pending, or `expect_state[msisdn]`)."""
    rep = report or StateReport()
    for o in orders:
        m, code = o["msisdn"], o["service"]
        rep.checked_subscribers += 1
        n = view.order_audits(m).get(code, 0)
        state = view.subs(m).get(code, "none")
        want = (expect_state or {}).get(m, "pending")
        if n > 1:
            rep.double_effects += 1
            rep.note(f"{m} {code}: order applied {n}x")
        elif n == 0:
            rep.lost_effects += 1
            rep.note(f"{m} {code}: order {o['order_id']} not applied")
        if state != want:
            rep.state_mismatch += 1
            rep.note(f"{m} {code}: state {state}, model {want}")
        if not view.order_recorded(m, o["order_id"]):
            rep.lost_effects += 1
            rep.note(f"{m}: order id {o['order_id']} not recorded")
    return rep


# -- billing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incarnation:
    """One subscription's life as the runner made it: start, first charge due, cancellation window."""

    msisdn: str
    code: str
    due_ms: int
    cancel_from_ms: int | None = None  # the cancelling MO's first send .. its acknowledgement
    cancel_to_ms: int | None = None


def period_of(at_ms: int, tz: str) -> tuple[str, int]:
    """(YYYY-MM, start ms) of the calendar month holding at_ms in zone tz (IANA name or +HH:MM)."""
    if re.fullmatch(r"[+-]\d\d:\d\d", tz):
        from datetime import timedelta, timezone

        sign = 1 if tz[0] == "+" else -1
        zone: Any = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    else:
        zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(at_ms / 1000, zone)
    start = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return f"{d.year:04d}-{d.month:02d}", int(start.timestamp() * 1000)


@dataclass
class BillingReport:
    expected: int = 0
    charges: int = 0
    missing: int = 0
    extra: int = 0
    wrong_amount: int = 0
    audit_mismatch: int = 0  # charge audit entries per ledger field != 1
    ambiguous: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.missing + self.extra + self.wrong_amount + self.audit_mismatch

    def note(self, text: str) -> None:
        if len(self.examples) < 12:
            self.examples.append(text)


def expected_charges(incs: list[Incarnation], run_at_ms: list[int], tz: str, cat: Catalogue) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    """{(msisdn, ledger field): fen} every run must have produced, and the ambiguous fields."""
    want: dict[tuple[str, str], int] = {}
    maybe: set[tuple[str, str]] = set()
    for at in run_at_ms:
        label, start = period_of(at, tz)
        for inc in incs:
            if cat.kind(inc.code) != "monthly" or inc.due_ms > at:
                continue
            key = (inc.msisdn, f"{inc.code}:{label}")
            if inc.cancel_from_ms is None:
                want[key] = cat.price(inc.code)
                continue
            lo, hi = inc.cancel_from_ms, inc.cancel_to_ms or inc.cancel_from_ms
            if lo > at:  # cancelled after the run
                want[key] = cat.price(inc.code)
            elif lo >= inc.due_ms and lo >= start:
                want[key] = cat.price(inc.code)
            elif hi >= start and hi >= inc.due_ms:  # the boundary lies inside the uncertainty
                maybe.add(key)
    return want, maybe


def compare_ledger(want: dict[tuple[str, str], int], maybe: set[tuple[str, str]], msisdns: Iterable[str], view: Any) -> BillingReport:
    """`view.ledger(msisdn) -> {field: fen}`, `view.charge_audits(msisdn) -> Counter{field: n}`."""
    rep = BillingReport(expected=len(want), ambiguous=len(maybe))
    for m in msisdns:
        got = view.ledger(m)
        audits = view.charge_audits(m)
        rep.charges += len(got)
        for fld, fen in got.items():
            key = (m, fld)
            if key not in want and key not in maybe:
                rep.extra += 1
                rep.note(f"{m} {fld}: charged, model says not")
            elif key in want and fen != want[key]:
                rep.wrong_amount += 1
                rep.note(f"{m} {fld}: {fen} fen, model {want[key]}")
            if audits.get(fld, 0) != 1:
                rep.audit_mismatch += 1
                rep.note(f"{m} {fld}: {audits.get(fld, 0)} charge audit entries")
        for fld, n in audits.items():
            if fld not in got:
                rep.audit_mismatch += 1
                rep.note(f"{m} {fld}: {n} charge audit entries, no ledger field")
    for (m, fld) in want:
        if fld not in view.ledger(m):
            rep.missing += 1
            rep.note(f"{m} {fld}: missing charge")
    return rep
