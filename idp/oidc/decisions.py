"""What to do with a browser's sign-in or sign-out: a typed ``Decision`` the web views render.

The views parse the request, ask ``SignIn`` for a decision and render it; every choice about the
visitor lives here, without Flask:

* ``authorize``: answer the relying party at once for an admitted browser (``RedirectToClient``),
  or park the request and queue the visitor (``Wait``); a forced re-login (``prompt=login``,
  ``max_age``) asks for a new place only once the old one was used; an ``id_token_hint`` naming
  another visitor is not this browser's login; a cross-site POST without the visitor cookie is
  replayed as a same-site GET (``RetrySameSite``); bad requests are refused (``ErrorPage``, or
  ``ClientError`` once the redirect URI is known to be the client's).
* ``resume``: the waiting page of a parked request: still waiting (``Waiting``), the place expired
  (``ErrorPage``), admitted (``RedirectToClient``, the code is issued), or parked so long that the
  relying party has likely forgotten it (``Restart`` at its ``initiate_login_uri``).
* ``logout``: end this browser's own admissions (``EndSession``) when the ``id_token_hint`` was issued
  to this browser or the visitor confirmed; otherwise ask for a confirmation (``ConfirmLogout``), or,
  without a visitor cookie, there is nothing of this browser to end (``NothingToEnd``).

The visitor's state has one vocabulary, the interaction ``State`` (``idp.oidc.interaction``): a place's
``Progress`` in the queue is one of its waiting, admitted and expired.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from idp.crypto import LookupKey, keyed_digest
from idp.errors import IdpError
from idp.oidc.claims import Admission, pairwise_sub
from idp.oidc.interaction import (
    InteractionError,
    InteractionFinishedError,
    Interactions,
    Progress,
    State,
    new_visitor_id,
)
from idp.oidc.records import InteractionRecord
from idp.tokens.verify import TokenRefused, id_token_hint_claims

if TYPE_CHECKING:
    from idp.clients.service import ClientConfig, ClientService
    from idp.clock import Clock
    from idp.config import Settings
    from idp.tokens.keys import KeyManager

# How long a sign-out confirmation may wait for its click.
LOGOUT_CONFIRM_SECONDS = 600
# Fields of a sign-out request carried through its confirmation form.
LOGOUT_FIELDS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint")


@dataclass(frozen=True)
class ErrorPage:
    """Refuse on our own page (there is no trusted place to send the visitor)."""

    title: str
    message: str
    status: int = 400
    code: str | None = None
    link: str | None = None
    link_text: str = "Return to the site"


@dataclass(frozen=True)
class ClientError:
    """Refuse with an authorization error sent back to a validated redirect URI (with ``state``)."""

    redirect_uri: str
    error: str
    description: str | None
    state: str | None


@dataclass(frozen=True)
class RedirectToClient:
    """Admitted: answer the relying party with an authorization response (a code), set the admitted
    cookie until ``session_expires_at`` (when known) and, for a new browser, its visitor cookie."""

    client: ClientConfig
    admission: Admission
    session_expires_at: int | None
    # The authorization request: authorize's parameters (first value of each), or the parked record's.
    params: dict[str, str]
    visitor_id: str
    new_visitor: bool = False


@dataclass(frozen=True)
class Wait:
    """Not admitted (or a re-login is forced): park the request, queue the visitor, show the waiting page.

    ``fresh``: a forced re-login, a new place once the old one was used."""

    client: ClientConfig
    params: dict[str, str]
    fresh: bool
    visitor_id: str
    new_visitor: bool = False


@dataclass(frozen=True)
class Waiting:
    """A parked request whose place is still behind the serving counter: show the waiting page."""

    record: InteractionRecord
    progress: Progress


@dataclass(frozen=True)
class Restart:
    """Admitted, but parked so long that the relying party has likely forgotten the request: send the
    visitor to its ``initiate_login_uri`` (a fresh request, answered at once) with the admitted cookie."""

    initiate_login_uri: str
    admission: Admission
    session_expires_at: int


@dataclass(frozen=True)
class RetrySameSite:
    """A cross-site POST without the visitor cookie: replay it as a same-site GET, which carries it."""


@dataclass(frozen=True)
class ConfirmLogout:
    """Ask the visitor to confirm the sign-out; ``csrf`` binds the form to this browser.

    ``form_action_origin``: the registered post-logout address's origin the form may lead on to."""

    client: ClientConfig | None
    csrf: str
    form_action_origin: str | None


@dataclass(frozen=True)
class NothingToEnd:
    """No visitor cookie: nothing of this browser to end, and nothing to confirm."""


@dataclass(frozen=True)
class EndSession:
    """This browser's admissions to ``ended`` have ended: clear their admitted cookies."""

    ended: tuple[str, ...]


AuthorizeDecision = ErrorPage | ClientError | RetrySameSite | RedirectToClient | Wait
ResumeDecision = ErrorPage | Waiting | Restart | RedirectToClient
LogoutDecision = NothingToEnd | ConfirmLogout | EndSession
Decision = AuthorizeDecision | ResumeDecision | LogoutDecision


class SessionEnder(Protocol):
    def finish_session(self, event_id: str, request_id: str, status: int) -> None: ...


@dataclass(frozen=True)
class AuthorizeAsk:
    """An authorization request as the browser sent it."""

    method: str
    params: Mapping[str, list[str]]  # every value of each parameter, in order
    visitor_id: str | None
    # The signed admitted cookie of an event (None when absent or not ours).
    admission_cookie: Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class LogoutAsk:
    """A sign-out request Authlib validated."""

    visitor_id: str | None
    confirmed: bool
    client: ClientConfig | None
    hint_claims: dict[str, Any] | None
    post_logout_redirect_uri: str
    # The events this browser holds an admitted cookie of, and the cookie of an event.
    cookie_events: Iterable[str]
    admission_cookie: Callable[[str], dict[str, Any] | None]


class SignIn:
    """The decisions of the sign-in pages; see the module's docstring."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        clients: ClientService,
        keys: KeyManager,
        interactions: Interactions,
        sessions: SessionEnder,
        lookup: LookupKey,
    ) -> None:
        self.settings = settings
        # Pairwise subjects are keyed by the lookup key (it never rotates with IDP_SECRET_KEY).
        self.lookup = lookup
        self.clock = clock
        self.clients = clients
        self.keys = keys
        self.interactions = interactions
        self.sessions = sessions

    def now(self) -> int:
        return int(self.clock.now())

    # --- authorize ---------------------------------------------------------------------------------

    def authorize(self, ask: AuthorizeAsk) -> AuthorizeDecision:
        """Answer at once for an admitted browser; otherwise the request is to be parked (``WAIT``)."""
        params = ask.params
        client_ids, redirect_uris = params.get("client_id", []), params.get("redirect_uri", [])
        client = self.clients.find(client_ids[0]) if len(client_ids) == 1 else None
        if client is None:
            return ErrorPage(
                "Unknown application",
                "The application that sent you here is not registered with this sign-in service.",
                code="invalid_client",
            )
        if len(redirect_uris) != 1 or redirect_uris[0] not in client.redirect_uris:
            return ErrorPage(
                "Unregistered return address",
                "The application asked to send you back to an address it has not registered, "
                "so this sign-in stops here.",
                code="invalid_redirect_uri",
            )
        first = {name: values[0] for name, values in params.items() if values}
        redirect_uri = redirect_uris[0]
        state = first.get("state")
        if any("\x00" in value for value in first.values()):
            # No database stores NUL characters; no honest request carries them.
            clean_state = None if state is None or "\x00" in state else state
            return ClientError(
                redirect_uri, "invalid_request", "Parameters must not contain NUL characters.", clean_state
            )
        if "request" in first:
            return ClientError(redirect_uri, "request_not_supported", "Request objects are not supported.", state)
        if "request_uri" in first:
            return ClientError(
                redirect_uri, "request_uri_not_supported", "The request_uri parameter is not supported.", state
            )
        visitor_id = ask.visitor_id
        if visitor_id is None and ask.method == "POST":
            # A cross-site POST arrives without the SameSite=Lax visitor cookie. Minting a visitor here
            # would replace the browser's cookie (its place and its sub at the relying party); a same-site
            # GET of the same request carries the cookie, so the decision is taken there.
            return RetrySameSite()
        new_visitor = visitor_id is None
        if visitor_id is None:
            visitor_id = new_visitor_id()
        prompts = (first.get("prompt") or "").split()
        admission = (
            None
            if new_visitor
            else self.interactions.admission(
                visitor_id, client.event_id, ask.admission_cookie(client.event_id), claim="login" not in prompts
            )
        )
        fresh = "login" in prompts
        max_age_raw = first.get("max_age")
        if max_age_raw is not None and max_age_raw != "":
            if not max_age_raw.isdigit() or len(max_age_raw) > 12:
                return ClientError(redirect_uri, "invalid_request", "max_age must be a whole number.", state)
            max_age = int(max_age_raw)
            # max_age=0 is prompt=login (Core §3.1.2.1).
            if max_age == 0 or (admission is not None and self.now() - admission.admitted_at > max_age):
                fresh = True
        hint = first.get("id_token_hint")
        if hint:
            try:
                hinted_sub = self.hint_subject(hint, client.client_id)
            except ValueError as exc:
                return ClientError(redirect_uri, "invalid_request", str(exc), state)
            if admission is not None and not self._same_sub(admission.visitor_id, client.client_id, hinted_sub):
                admission = None  # another visitor than the hint names: not logged in as them
        if "none" in prompts and fresh and len(prompts) == 1:
            return ClientError(redirect_uri, "login_required", "The visitor must queue again to sign in.", state)
        user = None if fresh else admission
        if user is None:
            return Wait(client, first, fresh, visitor_id, new_visitor)
        session = self.interactions.records.session_state(user.request_id)
        expires_at = session.expires_at if session is not None else None
        return RedirectToClient(client, user, expires_at, first, visitor_id, new_visitor)

    def hint_subject(self, hint: str, client_id: str) -> str:
        """The ``sub`` of an ID token we issued to this client (expired is fine); ValueError otherwise."""
        try:
            claims = id_token_hint_claims(
                hint, self.keys, issuer=self.settings.issuer, now=self.now, client_id=client_id
            )
        except TokenRefused:
            raise ValueError("id_token_hint is not an ID token this provider issued to this client") from None
        return str(claims["sub"])

    def _same_sub(self, visitor_id: str, client_id: str, sub: str) -> bool:
        expected = pairwise_sub(self.lookup, visitor_id, client_id)
        return hmac.compare_digest(expected.encode(), sub.encode("utf-8", "replace"))

    # --- the waiting page of a parked request ------------------------------------------------------

    def resume(self, interaction_id: str, visitor_id: str | None) -> ResumeDecision:
        """Where this browser's parked request stands; once admitted, the code is to be issued."""
        interactions = self.interactions
        record = interactions.load(interaction_id, visitor_id)
        client = self.clients.find(record.client_id)
        if client is None:
            return ErrorPage("Unknown application", "The application is no longer registered.")
        if record.state == State.CODE_ISSUED.value:
            raise InteractionFinishedError()
        if record.state in (State.EXPIRED.value, State.ABANDONED.value):
            return _expired(client)
        progress = interactions.progress(record.event_id, record.request_id)
        if progress.state is State.EXPIRED:
            try:
                interactions.move(record, State.EXPIRED)
            except InteractionError:
                pass
            return _expired(client)
        if progress.state is State.WAITING:
            return Waiting(record, progress)
        return self._finish(record, client)

    def _finish(self, record: InteractionRecord, client: ClientConfig) -> ResumeDecision:
        """Admitted: claim the place; the code is issued unless the relying party has likely forgotten."""
        interactions = self.interactions
        try:
            admission, session_end = interactions.admit(record)
        except InteractionError:
            raise
        except IdpError as exc:
            status = exc.status if exc.status < 500 else 400
            return ErrorPage("Your place cannot be used", exc.message, status, code=exc.code)
        if client.initiate_login_uri and interactions.parked_too_long(record, client.max_parked_seconds):
            # The relying party has likely forgotten this request; it starts a fresh one, answered at once.
            interactions.move(record, State.EXPIRED)
            return Restart(client.initiate_login_uri, admission, session_end)
        interactions.move(record, State.CODE_ISSUED)
        return RedirectToClient(client, admission, session_end, dict(record.params), record.visitor_id)

    # --- logout ------------------------------------------------------------------------------------

    def logout_csrf(self, visitor_id: str) -> str:
        """A confirmation token bound to this browser's visitor cookie, expiring after a few minutes."""
        expires = self.now() + LOGOUT_CONFIRM_SECONDS
        return f"{expires}.{self._logout_mac(visitor_id, expires)}"

    def logout_confirmed(self, visitor_id: str | None, token: str) -> bool:
        """True for a confirmation token of this browser that has not expired."""
        expires_text, _, mac = token.partition(".")
        if visitor_id is None or not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        if expires < self.now():
            return False
        return hmac.compare_digest(
            mac.encode("utf-8", "replace"), self._logout_mac(visitor_id, expires).encode("ascii")
        )

    def _logout_mac(self, visitor_id: str, expires: int) -> str:
        return keyed_digest(self.settings.secret_key, "logout confirmation", f"{visitor_id}\x00{expires}").hex()

    def hint_is_this_browsers(self, claims: dict[str, Any] | None, visitor_id: str | None) -> bool:
        """True when the id_token_hint was issued to this browser (its pairwise ``sub`` for the audience)."""
        if not claims or visitor_id is None:
            return False
        aud = claims.get("aud")
        audiences = (
            [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
        )
        sub = claims.get("sub")
        if not isinstance(sub, str):
            return False
        return any(self._same_sub(visitor_id, client_id, sub) for client_id in audiences)

    def logout(self, ask: LogoutAsk) -> LogoutDecision:
        """End this browser's own admissions, or ask for a confirmation first.

        Without a hint issued to this browser (none, or another browser's token), the visitor confirms
        on our page. Only this browser's admissions end, never the session a foreign hint names."""
        visitor_id, client = ask.visitor_id, ask.client
        own_hint = self.hint_is_this_browsers(ask.hint_claims, visitor_id)
        if not own_hint and not ask.confirmed:
            if visitor_id is None:
                # No visitor cookie (a new browser, or a cross-site request that does not carry it):
                # nothing of this browser to end, and nothing to confirm.
                return NothingToEnd()
            origin = None
            target = ask.post_logout_redirect_uri
            if client is not None and target in client.post_logout_redirect_uris:
                # Browsers apply form-action to the redirect that follows the form, so allow that origin.
                parts = urlsplit(target)
                origin = f"{parts.scheme}://{parts.netloc}"
            return ConfirmLogout(client, self.logout_csrf(visitor_id), origin)
        claims = ask.hint_claims or {}
        events: set[str] = set()
        if client is not None:
            events.add(client.event_id)
        if own_hint and isinstance(claims.get("event_id"), str):
            events.add(claims["event_id"])
        if not events:
            # A confirmed sign-out that names no application ends every admission this browser holds.
            events.update(ask.cookie_events)
        for event_id in sorted(events):
            admission = None
            if visitor_id is not None:
                try:
                    admission = self.interactions.admission(
                        visitor_id, event_id, ask.admission_cookie(event_id), claim=False
                    )
                except IdpError:
                    admission = None
            if admission is not None:
                self.sessions.finish_session(event_id, admission.request_id, 1)
        return EndSession(tuple(sorted(events)))


def _expired(client: ClientConfig) -> ErrorPage:
    return ErrorPage(
        "Your place has expired",
        "You were admitted but did not come back in time, so your "
        "place went to the next visitor. Start again from the site to queue again.",
        410,
        code="place_expired",
        link=client.initiate_login_uri,
        link_text="Sign in again",
    )
