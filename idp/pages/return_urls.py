"""Where an event may send admitted visitors from its waiting page (``/wait/<event_id>?next=<url>``)."""

from __future__ import annotations

from idp.cache import TTLCache
from idp.clients.service import ClientService
from idp.errors import ValidationError
from idp.events.service import EventConfig


class ReturnUrlError(ValidationError):
    code = "invalid_return_url"
    message = "The return address is not one this waiting room may send visitors to."


class ReturnUrls:
    """Where an event may send admitted visitors: its allowed return URLs and its clients' login URIs."""

    def __init__(self, clients: ClientService, ttl: float) -> None:
        self.clients = clients
        self._cache: TTLCache[frozenset[str]] = TTLCache(ttl)

    def _load(self, event: EventConfig) -> frozenset[str]:
        urls = set(event.allowed_return_urls)
        after: str | None = None
        while True:
            batch = self.clients.list(event_id=event.event_id, limit=100, after=after)
            urls.update(c.initiate_login_uri for c in batch if c.initiate_login_uri)
            if len(batch) < 100:
                break
            after = batch[-1].client_id
        return frozenset(urls)

    def allowed(self, event: EventConfig, url: str) -> bool:
        key = (event.event_id, event.updated_at)
        return url in self._cache.get(key, lambda: self._load(event))

    def check(self, event: EventConfig, raw: str | None) -> str | None:
        """The ``next`` address a waiting page was given, if the event may send visitors there."""
        if raw is None or raw == "":
            return None
        if len(raw) > 2000 or not self.allowed(event, raw):
            raise ReturnUrlError()
        return raw
