"""The project's exceptions. Entrypoints map these to HTTP codes, st.error or exit codes."""


class NurtureError(Exception):
    """Root of every error Nurture raises on purpose."""


class ConfigError(NurtureError):
    """Configuration is missing or contradictory; the message is one sentence for the operator."""


class DatabaseTooNew(ConfigError):
    """The database was migrated by a newer release of Nurture than the one running."""


class UsageError(NurtureError):
    """A command was given an argument it cannot act on (the CLI exits 2, like argparse)."""


class InvalidSignup(NurtureError):
    """A signup failed validation; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))
        self.errors = errors


class NotFound(NurtureError):
    """A contact, enrollment or send the caller named does not exist."""


class AlreadyErased(NotFound):
    """`forget` was asked again for an address already erased: nothing is left to erase, which is no failure."""

    def __init__(self, email: str, erased_at):
        super().__init__(f"{email} was already erased on {erased_at:%Y-%m-%d}")
        self.email, self.erased_at = email, erased_at


class StoppedContact(NurtureError):
    """An action would email a contact who unsubscribed or was suppressed."""


class InvalidToken(NurtureError):
    """An unsubscribe token was forged, altered or malformed."""


class MailerError(NurtureError):
    """A provider call failed. Subclasses say whether to retry."""

    @property
    def refused(self) -> bool:
        """The provider certainly did not act on the call (it refused it at the door), so nothing was sent.
        Otherwise (a timeout, a 5xx, a dropped connection) it may have sent the emails."""
        return False


class TransientMailerError(MailerError):
    """Retry later: 429, 5xx, network or timeout. `retry_after` is the provider's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status

    @property
    def refused(self) -> bool:
        return self.status == 429  # a rate limit answers before anything is processed


class PermanentMailerError(MailerError):
    """Retrying cannot help this call: e.g. 422 invalid address or validation error."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AccountMailerError(PermanentMailerError):
    """The account itself is refused (bad key, unverified domain): every send would fail alike."""

    @property
    def refused(self) -> bool:
        return True


def first_line(exc: Exception) -> str:
    """The first line of what a driver said (SQLAlchemy wraps it in `orig`), for a one-line message."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def without_secret(text: str, secret: str, name: str) -> str:
    """`text` with every copy of a credential replaced by its variable's name.

    HTTP libraries quote a header value they refuse (requests, h11), Authorization included: a key
    or token with a stray space or line break would otherwise reach logs, pages and /health. They
    quote it as a repr, so its escaped form ("\\r") and its printable core are replaced too.
    """
    forms = {secret, secret.strip(), repr(secret)[1:-1], repr(secret.strip())[1:-1]}
    for form in sorted((f for f in forms if f), key=len, reverse=True):  # whole values before their parts
        text = text.replace(form, f"[{name}]")
    return text


def safe_cause(exc: BaseException, secret: str) -> BaseException | None:
    """`exc` to chain a translated error to, or None when it quotes the credential (a traceback would print it)."""
    return None if without_secret(str(exc), secret, "") != str(exc) else exc
