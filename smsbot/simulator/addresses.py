"""How the simulated SMSC reads and writes handset numbers on the wire: an MT's destination under
its TON (`handset_number`, as a strict SMSC does) and an MO's source (`mo_source`)."""

from __future__ import annotations

from smsbot.msisdn import TON_INTERNATIONAL, TON_NATIONAL, subscriber_key


def handset_number(addr: str, ton: int, country_code: str | None) -> str:
    """The handset an MT is for, reading its ``destination_addr`` under its TON as a strict SMSC
    does: international (1) is digits beginning with a country code: the home one's numbers are
    its handsets (``8613800138000`` -> ``13800138000``), any other is abroad (``+447700900123``;
    national digits sent as international, ``13800138000`` under TON 1, are +1 380… and reach no
    handset here); national (2) or unknown (0): the number read leniently as the bot does."""
    if ton == TON_INTERNATIONAL:
        digits = addr[1:] if addr.startswith("+") else addr
        cc = country_code or ""
        if cc and digits.startswith(cc) and len(digits) > len(cc):
            return digits[len(cc):]
        return "+" + digits
    return subscriber_key(addr, country_code)


def mo_source(msisdn: str, international: bool, country_code: str | None) -> tuple[str, int]:
    """(source_addr, TON) of an MO from handset `msisdn` as the tester named it: a name already
    international (``+44…``, ``8613800138000``) is sent so under TON 1; a national number under
    TON 2, or with `international` (the field profile's ``international_source``) as the country
    code and the number under TON 1."""
    if msisdn.startswith("+"):
        return msisdn[1:], TON_INTERNATIONAL
    if subscriber_key(msisdn, country_code) != msisdn:
        return msisdn, TON_INTERNATIONAL
    if international and country_code and msisdn.isdigit():
        return country_code + msisdn, TON_INTERNATIONAL
    return msisdn, TON_NATIONAL
