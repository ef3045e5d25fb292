"""OpenID Connect clients (relying parties): validation, storage, secrets (stored hashed)."""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.cache import TTLCache
from idp.clock import Clock
from idp.errors import ConflictError, NotFoundError, ValidationError
from idp.events import EventNotFoundError, validate_event_id
from idp.hashing import hash_secret, new_secret, verify_secret
from idp.storage.db import Database
from idp.storage.models import Client, Event

CLIENT_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
DEFAULT_AUTH_METHODS = list(AUTH_METHODS)
SIGNING_ALGS = ("RS256", "ES256")


class ClientNotFoundError(NotFoundError):
    code = "client_not_found"
    message = "No such client."


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    event_id: str
    name: str = ""
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    token_endpoint_auth_methods: list[str] = field(default_factory=lambda: list(DEFAULT_AUTH_METHODS))
    initiate_login_uri: str | None = None
    max_parked_seconds: int = 150
    id_token_signed_response_alg: str = "RS256"  # noqa: S105 - an algorithm name
    require_pkce: bool = False
    scope: str = "openid profile email"
    created_at: int = 0
    updated_at: int = 0
    secret_hash: str = dataclasses.field(default="", repr=False, compare=False)

    def check_secret(self, secret: str) -> bool:
        return bool(self.secret_hash) and verify_secret(secret, self.secret_hash)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("secret_hash")
        return data

    @classmethod
    def from_row(cls, row: Client) -> ClientConfig:
        return cls(
            client_id=row.client_id,
            event_id=row.event_id,
            name=row.name,
            redirect_uris=list(row.redirect_uris or []),
            post_logout_redirect_uris=list(row.post_logout_redirect_uris or []),
            token_endpoint_auth_methods=list(row.token_endpoint_auth_methods or DEFAULT_AUTH_METHODS),
            initiate_login_uri=row.initiate_login_uri,
            max_parked_seconds=row.max_parked_seconds,
            id_token_signed_response_alg=row.id_token_signed_response_alg,
            require_pkce=row.require_pkce,
            scope=row.scope,
            created_at=row.created_at,
            updated_at=row.updated_at,
            secret_hash=row.client_secret_hash,
        )


def _uri(value: object, name: str) -> str:
    if not isinstance(value, str) or len(value) > 2000 or any(c.isspace() for c in value):
        raise ValidationError(f"{name} must be an absolute URL without spaces.", code="invalid_field")
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.netloc or parts.fragment:
        raise ValidationError(f"{name} must be an absolute http(s) URL without a fragment.", code="invalid_field")
    return value


def _uri_list(value: object, name: str, *, required: bool) -> list[str]:
    if not isinstance(value, list) or len(value) > 50 or (required and not value):
        raise ValidationError(f"{name} must be a list of 1 to 50 URLs.", code="invalid_field")
    return [_uri(item, name) for item in value]


def clean_client_fields(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    allowed = {
        "name",
        "event_id",
        "redirect_uris",
        "post_logout_redirect_uris",
        "token_endpoint_auth_methods",
        "initiate_login_uri",
        "max_parked_seconds",
        "id_token_signed_response_alg",
        "require_pkce",
        "scope",
    }
    if not partial:
        allowed.add("client_id")
    unknown = set(data) - allowed
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
    out: dict[str, Any] = {}
    if "client_id" in data and data["client_id"] is not None:
        if not isinstance(data["client_id"], str) or not CLIENT_ID_RE.match(data["client_id"]):
            raise ValidationError("client_id must be 1 to 64 letters, digits, '.', '_' or '-'.", code="invalid_field")
        out["client_id"] = data["client_id"]
    if "event_id" in data:
        out["event_id"] = validate_event_id(data["event_id"])
    elif not partial:
        raise ValidationError("event_id is required.", code="missing_field")
    if "redirect_uris" in data:
        out["redirect_uris"] = _uri_list(data["redirect_uris"], "redirect_uris", required=True)
    elif not partial:
        raise ValidationError("redirect_uris is required.", code="missing_field")
    if "post_logout_redirect_uris" in data:
        out["post_logout_redirect_uris"] = _uri_list(
            data["post_logout_redirect_uris"], "post_logout_redirect_uris", required=False
        )
    if "token_endpoint_auth_methods" in data:
        methods = data["token_endpoint_auth_methods"]
        if not isinstance(methods, list) or not methods or any(m not in AUTH_METHODS for m in methods):
            raise ValidationError(
                f"token_endpoint_auth_methods must be a non-empty list of {', '.join(AUTH_METHODS)}.",
                code="invalid_field",
            )
        out["token_endpoint_auth_methods"] = list(dict.fromkeys(methods))
    if "initiate_login_uri" in data:
        value = data["initiate_login_uri"]
        out["initiate_login_uri"] = None if value is None else _uri(value, "initiate_login_uri")
    if "max_parked_seconds" in data:
        value = data["max_parked_seconds"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86400:
            raise ValidationError("max_parked_seconds must be an integer from 1 to 86400.", code="invalid_field")
        out["max_parked_seconds"] = value
    if "id_token_signed_response_alg" in data:
        if data["id_token_signed_response_alg"] not in SIGNING_ALGS:
            raise ValidationError("id_token_signed_response_alg must be RS256 or ES256.", code="invalid_field")
        out["id_token_signed_response_alg"] = data["id_token_signed_response_alg"]
    if "require_pkce" in data:
        if not isinstance(data["require_pkce"], bool):
            raise ValidationError("require_pkce must be true or false.", code="invalid_field")
        out["require_pkce"] = data["require_pkce"]
    if "name" in data:
        if not isinstance(data["name"], str) or len(data["name"]) > 200:
            raise ValidationError("name must be a string of at most 200 characters.", code="invalid_field")
        out["name"] = data["name"]
    if "scope" in data:
        scope = data["scope"]
        if not isinstance(scope, str) or len(scope) > 300 or "openid" not in scope.split():
            raise ValidationError("scope must be a space-separated list that includes openid.", code="invalid_field")
        out["scope"] = scope
    return out


class ClientService:
    def __init__(self, db: Database, clock: Clock, cache_ttl: float) -> None:
        self.db = db
        self.clock = clock
        self._cache: TTLCache[ClientConfig | None] = TTLCache(cache_ttl)

    def _load(self, client_id: str) -> ClientConfig | None:
        with self.db.session(readonly=True) as session:
            row = session.get(Client, client_id)
            return None if row is None else ClientConfig.from_row(row)

    def find(self, client_id: object) -> ClientConfig | None:
        """Return the client or None (unknown or malformed id); never raises for bad input."""
        if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
            return None
        return self._cache.get(client_id, lambda: self._load(client_id))

    def get(self, client_id: object) -> ClientConfig:
        client = self.find(client_id)
        if client is None:
            raise ClientNotFoundError()
        return client

    def list(self, event_id: str | None = None, limit: int = 100, after: str | None = None) -> list[ClientConfig]:
        with self.db.session(readonly=True) as session:
            stmt = select(Client).order_by(Client.client_id).limit(limit)
            if event_id:
                stmt = stmt.where(Client.event_id == event_id)
            if after:
                stmt = stmt.where(Client.client_id > after)
            return [ClientConfig.from_row(row) for row in session.execute(stmt).scalars()]

    def create(self, data: dict[str, Any]) -> tuple[ClientConfig, str]:
        """Register a client; returns it with its secret, which is never shown again."""
        cleaned = clean_client_fields(data, partial=False)
        client_id = cleaned.pop("client_id", None) or secrets.token_hex(12)
        secret = new_secret()
        now = int(self.clock.now())
        with self.db.session() as session:
            if session.get(Event, cleaned["event_id"]) is None:
                raise EventNotFoundError()
            if session.get(Client, client_id) is not None:
                raise ConflictError("A client with this client_id exists.", code="client_exists")
            defaults = ClientConfig(client_id=client_id, event_id=cleaned["event_id"]).to_dict()
            row = Client(
                **{
                    **defaults,
                    **cleaned,
                    "client_secret_hash": hash_secret(secret),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            session.add(row)
            session.flush()
            config = ClientConfig.from_row(row)
        self._cache.invalidate(client_id)
        return config, secret

    def update(self, client_id: str, data: dict[str, Any]) -> ClientConfig:
        cleaned = clean_client_fields(data, partial=True)
        with self.db.session() as session:
            row = session.get(Client, client_id)
            if row is None:
                raise ClientNotFoundError()
            if "event_id" in cleaned and session.get(Event, cleaned["event_id"]) is None:
                raise EventNotFoundError()
            for key, value in cleaned.items():
                setattr(row, key, value)
            row.updated_at = int(self.clock.now())
            session.flush()
            config = ClientConfig.from_row(row)
        self._cache.invalidate(client_id)
        return config

    def rotate_secret(self, client_id: str) -> tuple[ClientConfig, str]:
        secret = new_secret()
        with self.db.session() as session:
            row = session.get(Client, client_id)
            if row is None:
                raise ClientNotFoundError()
            row.client_secret_hash = hash_secret(secret)
            row.updated_at = int(self.clock.now())
            session.flush()
            config = ClientConfig.from_row(row)
        self._cache.invalidate(client_id)
        return config, secret

    def delete(self, client_id: str) -> None:
        with self.db.session() as session:
            row = session.get(Client, client_id)
            if row is None:
                raise ClientNotFoundError()
            session.delete(row)
        self._cache.invalidate(client_id)
