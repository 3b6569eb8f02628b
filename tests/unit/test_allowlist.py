"""DASHBOARD_ALLOWED_EMAILS: which OIDC accounts are the team."""

import pytest

from core.allowlist import parse


def test_addresses_and_domains_are_matched_whatever_their_case():
    team = parse("Mia@Acme.org, @Crew.Example.com")
    assert team.admits("mia@acme.org") and team.admits("MIA@ACME.ORG ")
    assert team.admits("anyone@crew.example.com") and team.admits("Tom@CREW.example.com")


@pytest.mark.parametrize("email", [
    "tom@acme.org",  # same domain, not the listed address
    "mia@acme.org.evil.com",  # the listed address as a prefix
    "x@sub.crew.example.com",  # a subdomain is another domain
    "x@evilcrew.example.com",  # the domain as a suffix of another
    "crew.example.com",  # no address at all
    "@crew.example.com",  # a domain with no one at it
    "",
    None,
    42,
])
def test_anything_else_is_refused(email):
    assert not parse("mia@acme.org @crew.example.com").admits(email)


def test_an_address_the_provider_has_not_verified_proves_nothing():
    team = parse("@acme.org")
    assert not team.admits("mia@acme.org", email_verified=False)
    assert not team.admits("mia@acme.org", email_verified="false")
    assert team.admits("mia@acme.org", email_verified=True)
    assert team.admits("mia@acme.org")  # providers that do not send the claim


def test_star_admits_whoever_the_provider_admits():
    anyone = parse("*")
    assert anyone.admits("someone@gmail.com") and anyone.admits(None) and not anyone.empty


def test_an_empty_setting_is_an_empty_list():
    assert parse("").empty and parse(" , ").empty and not parse("@acme.org").empty


@pytest.mark.parametrize("entry", ["mia", "mia@", "@", "@acme", "a@@acme.org", "*.acme.org", "@acme..org"])
def test_an_entry_that_is_no_address_or_domain_is_named_in_the_error(entry):
    with pytest.raises(ValueError, match="acme|mia|'@'|\\*"):
        parse(f"tom@acme.org, {entry}")
