"""Taking a TCP port: the worker's API listens through it, and `make run` checks its ports with it first."""

import socket

from core.errors import ConfigError


def listen(host: str, port: int, *, server: str, settings_named: str, backlog: int = 2048) -> socket.socket:
    """A socket bound and listening on host:port, or ConfigError in one sentence naming the settings."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
    try:
        listener.bind((host, port))
        listener.listen(backlog)
        return listener
    except OSError as exc:
        listener.close()
        reason = (exc.strerror or str(exc)).rstrip(".")
        raise ConfigError(f"{server} cannot listen on {host}:{port} ({settings_named}): "
                          f"{reason[:1].lower() + reason[1:]}.") from None
