"""Where a backend sends its key: credentials in the base URL, and no key over plain http off this machine.

A key from the environment is meant for the provider it is named after; sent to an `--api-base` over plain
http it would cross the network readable by anyone on the path. So it is withheld (with a warning), and an
explicit `--api-key` over plain http to another host is refused, unless the user passes --allow-http-key.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
import ipaddress
import logging
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from prefgen.errors import PrefgenError
from prefgen.redact import redact, split_credentials

log = logging.getLogger("prefgen.judge")


def basic_auth(credentials: tuple[str, str]) -> str:
    """The Authorization header value for user:password."""
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine: 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z), or the name `localhost`.
    Nothing else by name: `*.localhost` and `localhost.localdomain` are whatever a resolver, a hosts file or a
    proxy makes of them, so a key sent there may well leave the machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def plain_http_off_machine(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() == "http" and not is_loopback(parts.hostname)
    except ValueError:
        return False


def key_to_send(url: str, key: str | None, *, explicit: bool, allow_http_key: bool) -> str | None:
    """The key to send to `url`, or None to send none; a PrefgenError for an explicit key that must not go."""
    if not key or allow_http_key or not plain_http_off_machine(url):
        return key
    where = redact(url)
    if explicit:
        raise PrefgenError(
            f"refusing to send the API key over plain http to {where}: use https, or pass --allow-http-key "
            "if this network is trusted"
        )
    log.warning("not sending the API key from the environment over plain http to %s "
                "(use https, or pass --allow-http-key if this network is trusted)", where)
    return None


def resolve(url: str, key: str | None, *, explicit: bool, allow_http_key: bool
            ) -> tuple[str, str | None, tuple[str, str] | None]:
    """(URL without credentials, key to send, basic-auth credentials from the URL or None).

    Credentials in the URL are the user's choice for that host: they are sent as HTTP basic auth, and an
    environment key is then not sent at all (a request carries one Authorization header). An explicit key
    and URL credentials together are a conflict the user must resolve.
    """
    bare, credentials = split_credentials(url)
    if credentials is not None:
        if explicit and key:
            raise PrefgenError(f"--api-base {redact(url)} carries credentials and --api-key gives a key too; "
                               "give one of them")
        key = None
        if plain_http_off_machine(bare) and not allow_http_key:
            raise PrefgenError(f"refusing to send the credentials in --api-base over plain http to {redact(url)}: "
                               "use https, or pass --allow-http-key if this network is trusted")
    return bare, key_to_send(bare, key, explicit=explicit, allow_http_key=allow_http_key), credentials


def no_key(spec: str, variables: str) -> PrefgenError:
    """The error for a provider's own API reached with no key: said before any call is sent, since every call
    would fail the same way (and some SDKs retry first)."""
    return PrefgenError(f"{spec} needs an API key and none is set: set {variables}, or pass --api-key (or "
                        "PREFGEN_API_KEY). A server of your own at --api-base needs none.")


@dataclass(frozen=True)
class Connection:
    """The settings every HTTP backend takes, declared once: where, with which key, how long, how many."""

    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    concurrency: int = 64  # requests in flight
    allow_http_key: bool = False

    def resolve(self, url: str, key: str | None) -> tuple[str, str | None, tuple[str, str] | None]:
        """`resolve` for this connection: `key` is the explicit key, or the one the backend found itself."""
        return resolve(url, key, explicit=self.api_key is not None, allow_http_key=self.allow_http_key)


CONNECTION_OPTIONS = tuple(f.name for f in fields(Connection))


class HttpBackend(ABC):
    """Base of the backends that reach a provider over HTTP. The registry passes each backend the options
    it declares; the connection settings are split off here and the rest go to `connect`, whose signature
    rejects anything a backend does not take."""

    options: tuple[str, ...] = CONNECTION_OPTIONS

    def __init__(self, model: str, **settings: Any) -> None:
        self.model = model
        connection = Connection(**{name: settings.pop(name) for name in CONNECTION_OPTIONS if name in settings})
        self.connect(connection, **settings)

    @abstractmethod
    def connect(self, connection: Connection) -> None:
        """Build the client from the connection settings (and the backend's own options, as keywords)."""
