"""OpenID Connect clients (relying parties): validation, storage, secrets (stored hashed)."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.cache import TTLCache
from idp.clock import Clock
from idp.errors import ConflictError, NotFoundError, ValidationError
from idp.events.service import EventNotFoundError, validate_event_id
from idp.hashing import hash_secret, new_secret, verify_secret
from idp.origins import clean_origin_list, origin_of_url
from idp.storage.db import Database
from idp.storage.models import Client, Event
from idp.targets import check_redirect_uri
from idp.validation import IDENTIFIER_RE

CLIENT_ID_RE = IDENTIFIER_RE
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
DEFAULT_AUTH_METHODS = list(AUTH_METHODS)
# RFC 7591 "none": a public client (a single-page or native app) that holds no secret.
PUBLIC_METHOD = "none"
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
    # Browser origins allowed to call discovery, JWKS, token, userinfo and revoke; None: the redirect URIs'.
    allowed_cors_origins: list[str] | None = None
    refresh_token_rotation: bool = False
    created_at: int = 0
    updated_at: int = 0
    secret_hash: str = dataclasses.field(default="", repr=False, compare=False)

    @property
    def is_public(self) -> bool:
        """A public client authenticates with its client id alone (and must use PKCE S256)."""
        return self.token_endpoint_auth_methods == [PUBLIC_METHOD]

    @property
    def cors_origins(self) -> list[str]:
        if self.allowed_cors_origins is not None:
            return list(self.allowed_cors_origins)
        return [origin for origin in (origin_of_url(uri) for uri in self.redirect_uris) if origin]

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
            allowed_cors_origins=None if row.allowed_cors_origins is None else list(row.allowed_cors_origins),
            refresh_token_rotation=row.refresh_token_rotation,
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
        "token_endpoint_auth_method",
        "allowed_cors_origins",
        "refresh_token_rotation",
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
    if "token_endpoint_auth_method" in data:
        # RFC 7591's single method, beside our list form.
        method = data["token_endpoint_auth_method"]
        if method not in (*AUTH_METHODS, PUBLIC_METHOD):
            raise ValidationError(
                f"token_endpoint_auth_method must be one of {', '.join((*AUTH_METHODS, PUBLIC_METHOD))}.",
                code="invalid_field",
            )
        if "token_endpoint_auth_methods" in data and data["token_endpoint_auth_methods"] != [method]:
            raise ValidationError(
                "token_endpoint_auth_method and token_endpoint_auth_methods disagree.", code="invalid_field"
            )
        out["token_endpoint_auth_methods"] = [method]
    elif "token_endpoint_auth_methods" in data:
        methods = data["token_endpoint_auth_methods"]
        if methods == [PUBLIC_METHOD]:
            out["token_endpoint_auth_methods"] = [PUBLIC_METHOD]
        elif not isinstance(methods, list) or not methods or any(m not in AUTH_METHODS for m in methods):
            raise ValidationError(
                f"token_endpoint_auth_methods must be a non-empty list of {', '.join(AUTH_METHODS)}, "
                f'or ["{PUBLIC_METHOD}"] alone for a public client.',
                code="invalid_field",
            )
        else:
            out["token_endpoint_auth_methods"] = list(dict.fromkeys(methods))
    if "allowed_cors_origins" in data:
        value = data["allowed_cors_origins"]
        try:
            origins = None if value is None else clean_origin_list(value, "allowed_cors_origins")
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid_field") from None
        if origins == ["*"]:
            raise ValidationError("allowed_cors_origins must name origins; '*' is not allowed.", code="invalid_field")
        out["allowed_cors_origins"] = origins
    if "refresh_token_rotation" in data:
        if not isinstance(data["refresh_token_rotation"], bool):
            raise ValidationError("refresh_token_rotation must be true or false.", code="invalid_field")
        out["refresh_token_rotation"] = data["refresh_token_rotation"]
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


def apply_public_rules(merged: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A public client always uses PKCE and rotates its refresh tokens; saying otherwise is refused."""
    if merged.get("token_endpoint_auth_methods") != [PUBLIC_METHOD]:
        return merged
    for name in ("require_pkce", "refresh_token_rotation"):
        if given.get(name) is False:
            raise ValidationError(
                f"A public client (token_endpoint_auth_method none) needs {name}.", code="invalid_field"
            )
    return {**merged, "require_pkce": True, "refresh_token_rotation": True}


class ClientService:
    def __init__(self, db: Database, clock: Clock, cache_ttl: float, *, require_https: bool = False) -> None:
        self.db = db
        self.clock = clock
        # Production: relying parties' URIs are https (plain http only on a loopback host).
        self.require_https = require_https
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

    def cors_origins(self) -> tuple[str, ...]:
        """Every origin some client's browser code may call the token side from."""
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(Client.redirect_uris, Client.allowed_cors_origins)).all()
        origins: set[str] = set()
        for redirect_uris, allowed in rows:
            config = ClientConfig(
                client_id="-",
                event_id="-",
                redirect_uris=list(redirect_uris or []),
                allowed_cors_origins=None if allowed is None else list(allowed),
            )
            origins.update(config.cors_origins)
        return tuple(sorted(origins))

    def create(self, data: dict[str, Any]) -> tuple[ClientConfig, str | None]:
        """Register a client; returns it with its secret (None for a public client), never shown again."""
        cleaned = clean_client_fields(data, partial=False)
        self._check_uris(cleaned)
        client_id = cleaned.pop("client_id", None) or secrets.token_hex(12)
        cleaned = apply_public_rules({"token_endpoint_auth_methods": DEFAULT_AUTH_METHODS, **cleaned}, data)
        public = cleaned["token_endpoint_auth_methods"] == [PUBLIC_METHOD]
        secret = None if public else new_secret()
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
                    "client_secret_hash": "" if secret is None else hash_secret(secret),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            session.add(row)
            session.flush()
            config = ClientConfig.from_row(row)
        self._cache.invalidate(client_id)
        return config, secret

    def _check_uris(self, cleaned: dict[str, Any]) -> None:
        if not self.require_https:
            return
        for name in ("redirect_uris", "post_logout_redirect_uris"):
            for uri in cleaned.get(name) or []:
                check_redirect_uri(uri, name)
        if cleaned.get("initiate_login_uri"):
            check_redirect_uri(cleaned["initiate_login_uri"], "initiate_login_uri")

    def update(self, client_id: str, data: dict[str, Any]) -> ClientConfig:
        cleaned = clean_client_fields(data, partial=True)
        self._check_uris(cleaned)
        with self.db.session() as session:
            row = session.get(Client, client_id)
            if row is None:
                raise ClientNotFoundError()
            if "event_id" in cleaned and session.get(Event, cleaned["event_id"]) is None:
                raise EventNotFoundError()
            current = ClientConfig.from_row(row).to_dict()
            cleaned = apply_public_rules({**current, **cleaned}, data)
            if cleaned["token_endpoint_auth_methods"] == [PUBLIC_METHOD]:
                row.client_secret_hash = ""  # a public client holds no secret
            for key, value in cleaned.items():
                if key not in ("client_id", "created_at", "updated_at"):
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
            if list(row.token_endpoint_auth_methods or []) == [PUBLIC_METHOD]:
                raise ConflictError("A public client has no secret.", code="public_client")
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
