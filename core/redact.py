"""Personal data left out of what we keep: addresses quoted in provider messages and audit details,
and everything in a Resend event beyond what applies to the send."""

import re

# An address as it appears in a provider's message ("550 5.1.1 <alex@acme.com>: no such user").
_ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")
ADDRESS_REMOVED = "[address]"
# What an event needs once applied; Resend's payload also carries the recipients, sender and subject.
_KEPT_DATA = ("email_id", "created_at", "bounce", "click", "failed")


def without_addresses(value):
    """A JSON value with every email address in its text replaced by a marker."""
    if isinstance(value, str):
        return _ADDRESS.sub(ADDRESS_REMOVED, value)
    if isinstance(value, dict):
        return {key: without_addresses(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_addresses(item) for item in value]
    return value


def kept_payload(event: dict) -> dict:
    """The part of an event worth keeping: its type, time and what applies to the send. The addresses a
    provider's message quotes are dropped (the send names the contact): nothing for an erasure to find."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    kept = {key: data[key] for key in _KEPT_DATA if key in data}
    if isinstance(kept.get("click"), dict):  # its link only: Resend adds the reader's IP address and browser
        kept["click"] = {"link": kept["click"].get("link")}
    return without_addresses({"type": event.get("type"), "created_at": event.get("created_at"), "data": kept})
