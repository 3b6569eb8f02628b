"""Who may use the dashboard after signing in with OIDC (DASHBOARD_ALLOWED_EMAILS).

A sign-in provider such as Google admits anyone with an account; this list says which of them
are the team. Entries are whole addresses (mia@acme.com), whole domains (@acme.com, not its
subdomains) or `*` (anyone the provider admits, for a provider already limited to the team).
"""

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

ANYONE = "*"


@dataclass(frozen=True)
class AllowList:
    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    anyone: bool = False

    @property
    def empty(self) -> bool:
        return not (self.addresses or self.domains or self.anyone)

    def admits(self, email: object, email_verified: object = None) -> bool:
        """Whether a signed-in account with this email claim is on the list.

        An address the provider says it has not verified is no proof of who signed in (some providers let
        anyone type one in), so it is refused unless the list admits anyone.
        """
        if self.anyone:
            return True
        if not isinstance(email, str) or str(email_verified).lower() == "false":  # False, or "false" as text
            return False
        address = email.strip().lower()
        local, at, domain = address.rpartition("@")
        return bool(local and at) and (address in self.addresses or domain in self.domains)


def parse(text: str) -> AllowList:
    """The list from its setting: entries separated by commas or spaces; ValueError names a bad entry."""
    addresses, domains, anyone = set(), set(), False
    for entry in text.replace(",", " ").split():
        if entry == ANYONE:
            anyone = True
        elif entry.startswith("@"):
            domains.add(_domain(entry))
        else:
            addresses.add(_address(entry))
    return AllowList(frozenset(addresses), frozenset(domains), anyone)


def _address(entry: str) -> str:
    try:
        checked = validate_email(entry, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(f"{entry!r} is neither an email address, a domain such as @acme.com, nor *") from None
    return checked.normalized.lower()


def _domain(entry: str) -> str:
    try:  # a domain is valid where an address at it is
        return validate_email("x" + entry, check_deliverability=False).domain.lower()
    except EmailNotValidError:
        raise ValueError(f"{entry!r} is not a domain such as @acme.com") from None
