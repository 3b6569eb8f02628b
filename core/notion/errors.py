"""Notion's failures, translated once at the adapter's edge into Nurture's own exceptions."""

from core.errors import ConfigError, NurtureError


class NotionError(NurtureError):
    """A Notion call failed. `status` and `code` are Notion's HTTP status and error code when known."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotionUnavailable(NotionError):
    """Retry later: 429, 5xx, a timeout or a network failure. `retry_after` is Notion's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None,
                 code: str | None = None):
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class NotionAccessError(NotionError):
    """The token or the database is refused (401, 403, 404 on the database): every call would fail alike."""


class NotionRequestError(NotionError):
    """Notion refused this one request (validation, a missing or mistyped property, an archived page)."""

    @property
    def page_gone(self) -> bool:
        """The page was deleted or archived in Notion, so a fresh one should be found or made."""
        return self.code == "object_not_found" or "archived" in str(self).lower()


class NotionPageConflict(NotionRequestError):
    """Two writes to one page collided (409): this page is retried shortly; Notion itself is fine."""


class NotionNotConfigured(ConfigError):
    """NOTION_TOKEN or NOTION_EMAIL_SEQUENCE_DB_ID is missing."""
