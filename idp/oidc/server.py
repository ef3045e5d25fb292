"""Authlib's AuthorizationServer wired to our clients, codes, grants, keys and clock.

* Authorization code grant (RFC 6749 §4.1) with ``client_secret_basic`` and ``client_secret_post``
  (a client may narrow them), OpenIDCode (nonce echoed, not required), PKCE S256 only (RFC 7636;
  enforced when a challenge was sent, a verifier without a challenge refused per RFC 9700 §4.8,
  required for clients registered with ``require_pkce``), RFC 9207 ``iss`` on authorization responses.
* Refresh tokens (RFC 6749 §6): opaque, stored hashed, valid within the visitor's waiting-room session
  and refused once it is finished; a refreshed ID token keeps the original ``auth_time`` (Core §12.2).
* Revocation (RFC 7009), introspection (RFC 7662), RP-initiated logout.

Access tokens are JWTs with the claim shape of the waiting-room access token (``aud`` = event id,
``token_use`` = access), so ``/verify`` accepts them, plus ``client_id``, ``scope`` and ``gid`` (the
grant) so ``/userinfo`` and introspection can tell clients apart. Their ``sub`` is the pairwise
subject, never the request id: the request id is the place's bearer secret and no token given to a
relying party carries it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Response
from flask import g as flask_g
from flask import request as flask_request

from idp.clients.service import ClientConfig, ClientService
from idp.clock import Clock
from idp.config import Settings
from idp.crypto import LookupKey
from idp.errors import ConflictError, NotFoundError
from idp.oidc.claims import Admission, user_claims
from idp.oidc.records import CodeRecord, GrantRecord, OidcRecords, new_token
from idp.tokens.issuer import InvalidTokenError, SessionState, TokenService
from idp.tokens.keys import KeyManager
from idp.tokens.verify import TokenRefused, id_token_hint_claims
from idp.web.bearer import request_bearer

log = logging.getLogger("idp.oidc")

CODE_LIFETIME = 60
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 3600
GRANT_TYPES = ("authorization_code", "refresh_token")
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# Public clients (RFC 7591 "none") authenticate with their client id alone, at the token and
# revocation endpoints; introspection stays with clients that hold a secret.
PUBLIC_AUTH_METHODS = [*AUTH_METHODS, "none"]
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


def append_params(uri: str, params: list[tuple[str, str]]) -> str:
    """Add parameters to a URI's query, leaving what is already there byte for byte."""
    if not params:
        return uri
    base, hash_mark, fragment = uri.partition("#")
    separator = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        separator = ""
    return base + separator + urlencode(params) + (hash_mark + fragment)


@dataclass(frozen=True)
class ClientUser:
    """The admitted visitor as one client knows it (its pairwise ``sub`` depends on the client)."""

    admission: Admission
    client_id: str
    # The grant the tokens of this exchange belong to (the ID token's ``sid``); None at /userinfo.
    grant_id: str | None = None


class OidcClient(ClientMixin):
    """Authlib's view of a registered client."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.client_id = config.client_id
        self.id_token_signed_response_alg = config.id_token_signed_response_alg

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.config.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.config.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every authorization request.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.config.scope.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(dict.fromkeys(s for s in scope.split() if s in allowed))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.config.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.config.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.config.token_endpoint_auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


class _IssuerRequest(FlaskOAuth2Request):
    """The Flask request, its URI rebuilt on IDP_ISSUER (a TLS proxy in front must not look insecure).

    OAuth2Request refuses an http URI in its constructor, so the URI is set before it runs rather than
    after FlaskOAuth2Request built one from the proxied request.
    """

    def __init__(self, issuer: str) -> None:
        path = flask_request.full_path if flask_request.query_string else flask_request.path
        OAuth2Request.__init__(self, flask_request.method, issuer + path, headers=flask_request.headers)
        self._request = flask_request
        self.payload = FlaskOAuth2Payload(flask_request)


class StoredRequest(OAuth2Request):
    """A parked authorization request, replayed from its stored parameters."""

    def __init__(self, issuer: str, params: dict[str, str]) -> None:
        super().__init__("GET", issuer + "/authorize", headers={})
        self.payload = BasicOAuth2Payload(dict(params))

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data  # type: ignore[no-any-return]

    @property
    def form(self) -> dict[str, str]:
        return {}


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` on every authorization response, appended without re-encoding the rest."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer

    def add_issuer_parameter(self, authorization_server: Any, response: Response) -> None:
        if response.location:
            response.location = append_params(response.location, [("iss", self.issuer)])


class Pkce(CodeChallenge):
    """S256 only; a challenge without a method would mean ``plain``, which is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        client = grant.request.client
        if not challenge and client is not None and (client.config.require_pkce or client.config.is_public):
            raise InvalidRequestError("This client must send a PKCE code_challenge (S256).")
        if challenge and not method:
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class IdToken(OpenIDCode):
    """ID tokens: signed with the active key of the client's algorithm, times from the service clock."""

    def __init__(self, server: OidcServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: OidcClient) -> Any:
        return self.server.keys.signing_keyset(self.get_client_algorithm(client))

    def get_client_algorithm(self, client: OidcClient) -> str:
        return client.config.id_token_signed_response_alg or "RS256"

    def get_encode_header(self, client: OidcClient) -> dict[str, Any]:
        return {"alg": self.get_client_algorithm(client), "typ": "JWT"}

    def get_client_claims(self, client: OidcClient) -> dict[str, Any]:
        # Times from the service clock: Authlib only fills in ``iat`` and ``exp`` when they are missing.
        now = self.server.now()
        return {"iss": self.server.issuer, "aud": client.get_client_id(), "iat": now, "exp": now + ID_TOKEN_LIFETIME}

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # Replays are stopped by single-use codes; a nonce is echoed, never a reason to refuse.
        return False

    def generate_user_info(self, user: ClientUser, scope: str) -> dict[str, Any]:
        claims = self.server.user_claims(user.admission, user.client_id, scope)
        if user.grant_id is not None:
            # The session id names the grant, so logout can end the session from the hint alone.
            claims["sid"] = user.grant_id
        return claims


class _AuthTime:
    """What a refreshed ID token keeps of the original authentication (Core §12.2)."""

    def __init__(self, auth_time: int) -> None:
        self.auth_time = auth_time

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AUTH_METHODS
    AUTHORIZATION_CODE_LENGTH = 43

    @property
    def oidc(self) -> OidcServer:
        return self.server  # type: ignore[no-any-return]

    def create_authorization_response(self, redirect_uri: str, grant_user: Admission | None) -> Any:
        # Authlib's version builds the Location with add_params_to_uri, which re-encodes the query the
        # redirect URI already has (WordPress registers ``admin-ajax.php?action=openid-connect-authorize``;
        # RFC 6749 §3.1.2 keeps that query as registered) and drops an empty ``state`` the client sent.
        # Here code and state are appended to the URI byte for byte, in a 303 that is not cached.
        if not grant_user:
            raise AccessDeniedError(redirect_uri=redirect_uri)
        self.request.user = grant_user
        code = self.generate_authorization_code()
        self.save_authorization_code(code, self.request)
        params = [("code", code)]
        state = self.request.payload.state
        if state is not None:
            params.append(("state", state))
        return 303, "", [("Location", append_params(redirect_uri, params)), *NO_STORE]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: Admission = request.user
        data = request.payload.data
        now = self.oidc.now()
        self.oidc.records.save_code(
            code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            nonce=data.get("nonce") or None,
            code_challenge=data.get("code_challenge") or None,
            code_challenge_method=data.get("code_challenge_method") or None,
            # The pairwise sub for this client, never the visitor id (the browser's cookie).
            subject=self.oidc.user_claims(user, request.client.get_client_id(), "")["sub"],
            event_id=user.event_id,
            request_id=user.request_id,
            queue_position=user.queue_position,
            auth_time=user.admitted_at,
            created_at=now,
            expires_at=now + CODE_LIFETIME,
            used_at=None,
            grant_id=None,
        )

    def query_authorization_code(self, code: str, client: OidcClient) -> CodeRecord | None:
        if not isinstance(code, str) or not 20 <= len(code) <= 128:
            return None
        record, reused_grant = self.oidc.records.consume_code(code, client.get_client_id())
        if reused_grant:
            # RFC 6749 §4.1.2: a reused code revokes what it gave.
            self.oidc.revoke_grant_id(reused_grant, finish=-1)
        return record

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Codes are marked used when exchanged (kept for reuse detection until they expire)."""

    def authenticate_user(self, authorization_code: CodeRecord) -> Admission:
        return authorization_code.admission()

    @hooked
    def create_token_response(self) -> Any:
        # Authlib's version asks the server's token generator, then save_token. Here the grant (with
        # its hashed refresh token) is stored first because the access token names it (``gid``), and
        # the exchange is refused once the visitor's waiting-room session has finished.
        client = self.request.client
        code: CodeRecord = self.request.authorization_code
        self.request.user = self.authenticate_user(code)
        session = self.oidc.records.session_state(code.request_id)
        if session is None or not session.active:
            raise InvalidGrantError("The visitor's session has finished.")
        refresh = new_token()
        grant = self.oidc.records.create_grant(code, session.expires_at, refresh)
        token = self.oidc.access_token(grant, session)
        token["refresh_token"] = refresh
        self.request.credential = grant
        self.request.user = ClientUser(self.request.user, client.get_client_id(), grant.grant_id)
        log.info("code exchanged", extra={"client_id": client.get_client_id()})
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshGrant(RefreshTokenGrant):
    """Refresh tokens; a client with ``refresh_token_rotation`` (every public client) gets a new one each
    time, and a refresh token presented after it was rotated revokes the whole grant (RFC 9700 §4.14.2):
    either the client or a thief used it twice, and the server cannot tell which.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AUTH_METHODS

    @property
    def oidc(self) -> OidcServer:
        return self.server  # type: ignore[no-any-return]

    def authenticate_refresh_token(self, refresh_token: str) -> GrantRecord | None:
        if not isinstance(refresh_token, str) or not 20 <= len(refresh_token) <= 128:
            return None
        records = self.oidc.records
        grant = records.grant_by_refresh(refresh_token)
        if grant is None:
            reused = records.grant_of_used_refresh(refresh_token)
            if reused is not None:
                self._revoke_family(reused)
            return None
        if grant.is_revoked() or grant.expires_at <= self.oidc.now():
            return None
        return grant

    def _revoke_family(self, grant_id: str) -> None:
        log.warning(
            "rotated refresh token reused; grant revoked", extra={"client_id": self.request.client.get_client_id()}
        )
        # As a reused code: the grant and the visitor's session end, so no token of it works any more.
        self.oidc.revoke_grant_id(grant_id, finish=-1)

    def authenticate_user(self, refresh_token: GrantRecord) -> Admission:
        return refresh_token.admission()

    def revoke_old_credential(self, refresh_token: GrantRecord) -> None:
        """The refresh token stays valid for the session; it is not rotated."""

    @hooked
    def create_token_response(self) -> Any:
        # As for the code: tokens bounded by the visitor's session and naming the grant; the refreshed
        # ID token keeps the original ``auth_time`` (Core §12.2), which Authlib would set to now.
        grant: GrantRecord = self.request.refresh_token
        session = self.oidc.records.session_state(grant.request_id)
        if session is None or not session.active:
            raise InvalidGrantError("The visitor's session has finished.")
        scope = self.request.payload.scope or grant.scope
        grant = GrantRecord(**{**grant.__dict__, "scope": scope})
        client = self.request.client
        self.request.user = ClientUser(self.authenticate_user(grant), client.get_client_id(), grant.grant_id)
        self.request.authorization_code = _AuthTime(grant.auth_time)
        self.request.credential = grant
        rotated: str | None = None
        if client.config.refresh_token_rotation:
            rotated = new_token()
            presented = self.request.payload.data.get("refresh_token", "")
            if not self.oidc.records.rotate_refresh(grant, presented, rotated):
                # Another request used this refresh token first.
                self._revoke_family(grant.grant_id)
                raise InvalidGrantError("The refresh token has already been used.")
        token = self.oidc.access_token(grant, session)
        if rotated is not None:
            token["refresh_token"] = rotated
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _TokenLookup:
    """Find a grant from an access token (a JWT of ours) or a refresh token."""

    server: OidcServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> GrantRecord | None:
        return self.server.find_grant(token_string, token_type_hint)


class Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = PUBLIC_AUTH_METHODS

    def revoke_token(self, token: GrantRecord, request: OAuth2Request) -> None:
        # Access and refresh token are one grant: revoking either ends both, and the visitor's
        # session is completed so /verify refuses the access token too.
        self.server.revoke_grant_id(token.grant_id, finish=1)


class Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_permission(self, token: GrantRecord, client: OidcClient, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: GrantRecord) -> dict[str, Any]:
        session = self.server.records.session_state(token.request_id)
        if session is None or not session.active:
            return {"active": False}
        user = token.admission()
        sub = self.server.user_claims(user, token.client_id, "")["sub"]
        claims = token.access_claims
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "scope": token.scope,
            "sub": sub,
            "iss": self.server.issuer,
            "token_type": "Bearer" if claims else "refresh_token",
            "exp": claims["exp"] if claims else token.expires_at,
            "iat": claims["iat"] if claims else token.created_at,
            "aud": claims["aud"] if claims else token.event_id,
            "auth_time": token.auth_time,
            "event_id": token.event_id,
            "queue_position": token.queue_position,
        }
        return payload

    def create_introspection_payload(self, token: GrantRecord | None) -> dict[str, Any]:
        if not token or token.is_revoked() or token.expires_at <= self.server.now():
            return {"active": False}
        return self.introspect_token(token)


class BearerError(OAuth2Error):
    """A refusal of ``/userinfo`` per RFC 6750 §3: the challenge in ``WWW-Authenticate``, the reason in JSON."""

    realm = "userinfo"

    def __init__(self, description: str | None = None) -> None:
        # RFC 6749 §5.2 allows only printable ASCII without '"' and '\\' in an error description.
        if description is not None:
            description = "".join(c for c in description if " " <= c <= "~" and c not in '"\\')
        super().__init__(description)

    def get_body(self) -> list[tuple[str, Any]]:
        return [("error", self.error), ("message", self.get_error_description())]

    def challenge(self) -> list[str]:
        return [f'error="{self.error}"', f'error_description="{self.get_error_description()}"']

    def get_headers(self) -> list[tuple[str, str]]:
        params = ", ".join([f'realm="{self.realm}"', *self.challenge()])
        return [*super().get_headers(), ("WWW-Authenticate", f"Bearer {params}")]


class MissingBearerError(BearerError):
    """No token at all: the challenge names no error code (RFC 6750 §3.1)."""

    error = "invalid_request"
    description = "A bearer token is required."
    status_code = 401

    def challenge(self) -> list[str]:
        return []


class InvalidBearerError(BearerError):
    """Malformed, unknown, expired or revoked (RFC 6750 §3.1 ``invalid_token``)."""

    error = "invalid_token"
    description = "The access token is not valid."
    status_code = 401


class InsufficientBearerScopeError(BearerError):
    """A valid token without the ``openid`` scope (RFC 6750 §3.1 ``insufficient_scope``)."""

    error = "insufficient_scope"
    description = "The access token was not granted the openid scope."
    status_code = 403

    def challenge(self) -> list[str]:
        return [*super().challenge(), 'scope="openid"']


class ClientAccessToken:
    """Authlib's ``TokenMixin`` view of a verified access token issued to a client."""

    def __init__(self, claims: dict[str, Any], grant: GrantRecord, client: OidcClient) -> None:
        self.claims = claims
        self.grant = grant
        self.client = client
        scope = claims.get("scope")
        self.scope: str = scope if isinstance(scope, str) else grant.scope

    def get_client(self) -> OidcClient:
        return self.client

    def get_user(self) -> ClientUser:
        grant = self.grant
        return ClientUser(grant.admission(), grant.client_id)

    def get_scope(self) -> str:
        return self.scope

    def check_client(self, client: OidcClient) -> bool:
        return self.grant.check_client(client)

    def get_expires_in(self) -> int:
        return max(0, int(self.claims["exp"]) - int(self.claims["iat"]))

    def is_expired(self) -> bool:
        return False  # verify_access_token refuses expired tokens

    def is_revoked(self) -> bool:
        return False  # verify_access_token refuses revoked grants


class AccessTokenValidator(BearerTokenValidator):
    """Our access tokens: a JWT signed by one of our keys, whose grant is still live."""

    def __init__(self, server: OidcServer) -> None:
        super().__init__(realm=BearerError.realm)
        self.server = server

    def authenticate_token(self, token_string: str) -> ClientAccessToken:
        try:
            claims, grant = self.server.verify_access_token(token_string)
        except InvalidTokenError as exc:
            # Only a refused token; a store that cannot answer stays a 503 with Retry-After.
            raise InvalidBearerError(exc.message) from None
        client = self.server.query_client(grant.client_id)
        if client is None:
            raise InvalidBearerError("The client of this access token is no longer registered.")
        return ClientAccessToken(claims, grant, client)

    def validate_token(self, token: ClientAccessToken, scopes: list[str] | None, request: Any) -> None:
        if self.scope_insufficient(token.get_scope(), scopes):
            raise InsufficientBearerScopeError()


class BearerProtector(ResourceProtector):
    """Authlib's resource protector reading the token with the service's one bearer parser.

    Besides the header, a POST may carry the token as the ``access_token`` form field (RFC 6750 §2.2):
    OpenID Connect Core §5.3.1 allows it at ``/userinfo`` and conformance tests send it.
    """

    def parse_request_authorization(self, request: Any) -> tuple[BearerTokenValidator, str]:
        token = request_bearer(form=True)
        if token is None:
            raise MissingBearerError()
        return self.get_token_validator("bearer"), token


class UserInfo(UserInfoEndpoint):
    """OpenID Connect Core §5.3: the claims of the visitor, as the ID token carries them."""

    def get_issuer(self) -> str:
        return self.server.issuer  # type: ignore[no-any-return]

    def generate_user_info(self, user: ClientUser, scope: str) -> dict[str, Any]:
        return self.server.user_claims(user.admission, user.client_id, scope)  # type: ignore[no-any-return]


class EndSession(EndSessionEndpoint):
    def get_server_jwks(self) -> Any:
        return self.server.keys.verification_keyset()

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:  # Authlib's private hook
        # Authlib's check decodes with the system time and ignores the issuer; ours uses the service
        # clock, the issuer and the one verifier every JWT of this service goes through.
        try:
            return id_token_hint_claims(id_token_hint, self.server.keys, issuer=self.server.issuer, now=self.server.now)
        except TokenRefused:
            raise InvalidRequestError("id_token_hint is not an ID token of this provider.") from None

    def end_session(self, end_session_request: Any) -> None:
        """The view ends the browser's admissions; nothing is needed from the token side here."""

    def is_post_logout_redirect_uri_legitimate(self, request: Any, uri: str, client: Any, hint: Any) -> bool:
        # Without an id_token_hint the visitor confirmed on our page (a POST with a CSRF token).
        return bool(flask_g.get("logout_confirmed"))


class OidcServer(AuthorizationServer):
    """The AuthorizationServer of this service; it holds the clients, keys, tokens and records it needs."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        clients: ClientService,
        keys: KeyManager,
        tokens: TokenService,
        records: OidcRecords,
        lookup: LookupKey,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.lookup = lookup
        self.clock = clock
        self.clients = clients
        self.keys = keys
        self.tokens = tokens
        self.records = records
        self.issuer: str = settings.issuer
        self.register_token_generator("default", self._no_generator)
        self.register_grant(CodeGrant, [IdToken(self), Pkce(required=True)])
        self.register_grant(RefreshGrant, [IdToken(self)])
        self.register_extension(Issuer(self.issuer))
        self.register_endpoint(Revocation(self))
        self.register_endpoint(Introspection(self))
        self.register_endpoint(EndSession(self))
        protector = BearerProtector()
        protector.register_token_validator(AccessTokenValidator(self))
        self.register_endpoint(UserInfo(self, resource_protector=protector))

    # --- plumbing -------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock.now())

    def query_client(self, client_id: Any) -> OidcClient | None:
        config = self.clients.find(client_id)
        return None if config is None else OidcClient(config)

    @staticmethod
    def _no_generator(**kwargs: Any) -> dict[str, Any]:  # pragma: no cover - grants issue their own
        raise RuntimeError("tokens are issued by the grants")

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _IssuerRequest(self.issuer)

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        try:
            return super().authenticate_client(request, methods, endpoint)
        except (UnicodeError, ValueError, TypeError):
            # A Basic header that does not decode is a failed authentication, not a server error.
            raise InvalidClientError(status_code=401, description="The client credentials are malformed.") from None

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        response: Response = super().handle_response(status_code, payload, headers)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    def user_claims(self, user: Admission, client_id: str, scope: str) -> dict[str, Any]:
        settings = self.settings
        return user_claims(
            self.lookup,
            user,
            client_id,
            scope,
            email_domain=settings.synthetic_email_domain or "visitors.invalid",
        )

    # --- tokens ---------------------------------------------------------------------------------

    def access_token(self, grant: GrantRecord, session: SessionState) -> dict[str, Any]:
        """A token response for ``grant``: a signed access token bounded by the session's end."""
        from idp.tokens.issuer import sign_jwt

        now = self.now()
        exp = min(now + ACCESS_TOKEN_LIFETIME, session.expires_at)
        user = grant.admission()
        claims = {
            "aud": grant.event_id,
            # The pairwise subject, as in the ID token: never the place's request id, which is a credential.
            "sub": self.user_claims(user, grant.client_id, "")["sub"],
            "queue_position": grant.queue_position,
            "token_use": "access",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "iss": session.issuer,
            "jti": new_token(12),
            "client_id": grant.client_id,
            "scope": grant.scope,
            "gid": grant.grant_id,
        }
        return {
            "access_token": sign_jwt(claims, self.keys),
            "token_type": "Bearer",
            "expires_in": max(0, exp - now),
            "scope": grant.scope,
        }

    def verify_access_token(self, token: Any) -> tuple[dict[str, Any], GrantRecord]:
        """Claims and grant of a valid access token issued to a client; InvalidTokenError (401) otherwise."""
        claims = self.tokens.verify_access_token(token)
        grant_id = claims.get("gid")
        if not isinstance(grant_id, str) or not isinstance(claims.get("client_id"), str):
            raise InvalidTokenError("The access token was not issued to a client.")
        grant = self.records.grant(grant_id)
        if grant is None or grant.is_revoked() or grant.client_id != claims["client_id"]:
            raise InvalidTokenError("The access token has been revoked.")
        return claims, grant

    def find_grant(self, token: Any, hint: str | None) -> GrantRecord | None:
        if not isinstance(token, str) or not token or len(token) > 8192:
            return None
        if token.count(".") == 2:
            try:
                claims, grant = self.verify_access_token(token)
            except InvalidTokenError:
                return None
            return GrantRecord(**{**grant.__dict__, "access_claims": claims})
        return self.records.grant_by_refresh(token)

    def revoke_grant_id(self, grant_id: str, *, finish: int) -> None:
        records = self.records
        grant = records.grant(grant_id)
        if grant is None:
            return
        records.revoke_grant(grant_id)
        self.finish_session(grant.event_id, grant.request_id, finish)

    def finish_session(self, event_id: str, request_id: str, status: int) -> None:
        """Complete (1) or abandon (-1) the visitor's session, so capacity frees; once is enough."""
        self.records.revoke_session_grants(event_id, request_id)
        try:
            self.tokens.update_session(event_id, request_id, status)
        except (ConflictError, NotFoundError):
            pass  # already finished, never issued, or the event is gone; an outage still answers 503
