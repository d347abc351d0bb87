"""How plugins contribute dispatcher kinds and stores (``register_dispatchers``), and the ``[dispatcher]`` table.

A ``DispatcherRegistration`` names a kind (``inprocess``, ``taskiq``) and builds its dispatcher
from ``DispatcherSettings`` (the configuration's ``[dispatcher]`` table, with the stores it
names); a ``StoreRegistration`` builds ledgers, rate limiters and status stores for a URL scheme.
``ChannelRegistry.create_dispatcher`` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from attrs import field, frozen

from messaging_core.campaigns.protocols import Dispatcher, RateLimiter, SendLedger, StatusStore
from messaging_core.errors import ConfigurationError

if TYPE_CHECKING:
    from messaging_core.connector import ChannelConnector

__all__ = ["DispatcherRegistration", "DispatcherSettings", "StoreRegistration", "url_scheme"]


def _redacted_url(url: str | None) -> str:
    """A URL for ``repr`` and error texts: the password never shows."""
    if url is None:
        return "None"
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return repr(parts._replace(netloc=netloc).geturl())


def url_scheme(url: str) -> str:
    """``postgresql`` for ``postgresql://…``; a bare word (``memory``) is its own scheme."""
    return url.split("://", 1)[0].lower() if "://" in url else url.lower()


@frozen
class StoreRegistration:
    """Stores a plugin builds from URLs of one scheme (``postgresql``, ``redis``, ``memory``).

    Each factory takes the URL and the ``[dispatcher]`` table's options, and returns a store
    that connects on first use (factories are synchronous).
    """

    scheme: str
    ledger: Callable[[str, Mapping[str, Any]], SendLedger] | None = None
    limiter: Callable[[str, Mapping[str, Any]], RateLimiter] | None = None
    status_store: Callable[[str, Mapping[str, Any]], StatusStore] | None = None
    description: str = ""


@frozen
class DispatcherSettings:
    """The ``[dispatcher]`` table, as a dispatcher factory receives it (``${ENV}`` already expanded)."""

    kind: str
    ledger: str | None = field(default=None, repr=_redacted_url)
    """URL of the send ledger (``memory`` when absent)."""
    limiter: str | None = field(default=None, repr=_redacted_url)
    status_store: str | None = field(default=None, repr=_redacted_url)
    broker: str | None = field(default=None, repr=_redacted_url)
    options: Mapping[str, Any] = field(factory=dict, repr=False)
    """Every other key of the table (``concurrency``, ``messages_per_second``, a kind's own)."""
    stores: Mapping[str, StoreRegistration] = field(factory=dict, repr=False)
    """Store registrations by URL scheme (filled by ``ChannelRegistry.create_dispatcher``)."""

    _KEYS = frozenset({"kind", "ledger", "limiter", "status_store", "broker"})

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], stores: Mapping[str, StoreRegistration] | None = None
    ) -> DispatcherSettings:
        kind = table.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ConfigurationError("[dispatcher]: 'kind' is required (a dispatcher kind, e.g. \"inprocess\")")
        for key in ("ledger", "limiter", "status_store", "broker"):
            if table.get(key) is not None and not isinstance(table[key], str):
                raise ConfigurationError(f"[dispatcher]: {key!r} must be a URL string")
        return cls(
            kind,
            table.get("ledger"),
            table.get("limiter"),
            table.get("status_store"),
            table.get("broker"),
            {k: v for k, v in table.items() if k not in cls._KEYS},
            dict(stores or {}),
        )

    def create_ledger(self) -> SendLedger:
        """The ledger its URL names (``memory`` when none)."""
        url = self.ledger or "memory"
        factory = self._registration(url).ledger
        if factory is None:
            raise self._missing("ledger", url)
        return factory(url, self.options)

    def create_limiter(self) -> RateLimiter:
        """The rate limiter its URL names (``memory`` when none: paced by ``messages_per_second``)."""
        url = self.limiter or "memory"
        factory = self._registration(url).limiter
        if factory is None:
            raise self._missing("limiter", url)
        return factory(url, self.options)

    def create_status_store(self) -> StatusStore:
        """The status store its URL names (``memory`` when none)."""
        url = self.status_store or "memory"
        factory = self._registration(url).status_store
        if factory is None:
            raise self._missing("status_store", url)
        return factory(url, self.options)

    def _registration(self, url: str) -> StoreRegistration:
        return self.stores.get(url_scheme(url)) or StoreRegistration(url_scheme(url))

    def _missing(self, role: str, url: str) -> ConfigurationError:
        known = sorted(scheme for scheme, r in self.stores.items() if getattr(r, role) is not None)
        return ConfigurationError(
            f"[dispatcher]: no installed plugin provides a {role} for {url_scheme(url)!r} URLs "
            f"({role} = {_redacted_url(url)}; available: {', '.join(known) or 'none'})"
        )


@frozen
class DispatcherRegistration:
    """A dispatcher kind a plugin contributes (``register_dispatchers``)."""

    kind: str
    """The name in ``[dispatcher] kind = ...`` (``inprocess``, ``taskiq``)."""
    create: Callable[[ChannelConnector, DispatcherSettings], Dispatcher]
    """Builds a dispatcher sending through the connector, from the ``[dispatcher]`` table."""
    description: str = ""
