"""The sign-in and sign-out decisions, without Flask, a database or a queue store."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.clients.service import ClientConfig
from idp.clock import FrozenClock
from idp.crypto import LookupKey
from idp.errors import IdpError
from idp.oidc.claims import Admission, pairwise_sub
from idp.oidc.decisions import (
    LOGOUT_CONFIRM_SECONDS,
    AuthorizeAsk,
    ClientError,
    ConfirmLogout,
    EndSession,
    ErrorPage,
    LogoutAsk,
    NothingToEnd,
    RedirectToClient,
    Restart,
    RetrySameSite,
    SignIn,
    Wait,
    Waiting,
)
from idp.oidc.interaction import InteractionFinishedError, Progress, State
from idp.oidc.records import InteractionRecord

pytestmark = pytest.mark.unit

SECRET = "s" * 40
LOOKUP = LookupKey.from_secret(SECRET)
ISSUER = "https://idp.example"
NOW = 1_700_000_000
RP = "https://rp.example/cb"
VISITOR = "v" * 43
OTHER_VISITOR = "w" * 43
SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
CLIENT = ClientConfig(
    client_id="rp",
    event_id="sale",
    redirect_uris=[RP],
    post_logout_redirect_uris=["https://rp.example/bye"],
    initiate_login_uri="https://rp.example/login",
)


@dataclass
class FakeInteractions:
    """The interaction calls a decision makes, answered from fields and recorded."""

    admitted: Admission | None = None
    session_end: int | None = NOW + 3600
    record: InteractionRecord | None = None
    progress_state: State = State.WAITING
    too_long: bool = False
    admit_error: IdpError | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def records(self) -> Any:
        end = self.session_end
        return SimpleNamespace(session_state=lambda _rid: None if end is None else SimpleNamespace(expires_at=end))

    def admission(self, visitor_id: str, event_id: str, cookie: Any, *, claim: bool = True) -> Admission | None:
        self.calls.append(("admission", visitor_id, event_id, cookie, claim))
        if self.admitted is None or self.admitted.visitor_id != visitor_id or self.admitted.event_id != event_id:
            return None
        return self.admitted

    def load(self, interaction_id: str, visitor_id: str | None) -> InteractionRecord:
        assert self.record is not None
        return self.record

    def progress(self, event_id: str, request_id: str) -> Progress:
        return Progress(self.progress_state, 7, 3 if self.progress_state is State.WAITING else 7, NOW - 5)

    def move(self, record: InteractionRecord, to: State) -> None:
        self.calls.append(("move", to))

    def admit(self, record: InteractionRecord) -> tuple[Admission, int]:
        if self.admit_error is not None:
            raise self.admit_error
        return Admission(record.visitor_id, record.event_id, record.request_id, 7, NOW - 5), NOW + 900

    def parked_too_long(self, record: InteractionRecord, max_parked_seconds: int) -> bool:
        return self.too_long


class FakeSessions:
    def __init__(self) -> None:
        self.finished: list[tuple[str, str, int]] = []

    def finish_session(self, event_id: str, request_id: str, status: int) -> None:
        self.finished.append((event_id, request_id, status))


def _sign_in(interactions: FakeInteractions, sessions: FakeSessions | None = None) -> tuple[SignIn, FrozenClock]:
    clock = FrozenClock(NOW)
    settings: Any = SimpleNamespace(issuer=ISSUER, secret_key=SECRET)
    clients: Any = SimpleNamespace(find=lambda client_id: CLIENT if client_id == CLIENT.client_id else None)
    keys: Any = SimpleNamespace(verification_key=lambda kid: SIGNING_KEY if kid == "k1" else None)
    return SignIn(settings, clock, clients, keys, interactions, sessions or FakeSessions(), LOOKUP), clock  # type: ignore[arg-type]


def _ask(method: str = "GET", visitor_id: str | None = VISITOR, **params: str | list[str]) -> AuthorizeAsk:
    values = {"client_id": "rp", "redirect_uri": RP, "response_type": "code", "scope": "openid", "state": "st"}
    values.update(params)  # type: ignore[arg-type]
    lists = {name: value if isinstance(value, list) else [value] for name, value in values.items()}
    return AuthorizeAsk(method, lists, visitor_id, lambda event_id: {"cookie-of": event_id})


def _id_token(visitor_id: str, *, audience: str = "rp", issuer: str = ISSUER, **extra: Any) -> str:
    claims = {"iss": issuer, "aud": audience, "sub": pairwise_sub(LOOKUP, visitor_id, audience), "exp": NOW - 10}
    claims.update(extra)
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, SIGNING_KEY)


def _admitted(visitor_id: str = VISITOR, admitted_at: int = NOW - 100) -> Admission:
    return Admission(visitor_id, "sale", "r" * 22, 5, admitted_at)


# --- authorize ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"client_id": "unknown"}, "invalid_client"),
        ({"client_id": ["rp", "rp"]}, "invalid_client"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_redirect_uri"),
        ({"redirect_uri": [RP, RP]}, "invalid_redirect_uri"),
    ],
)
def test_an_untrusted_client_or_redirect_uri_is_refused_on_our_page(params: dict[str, Any], code: str) -> None:
    interactions = FakeInteractions()
    decision = _sign_in(interactions)[0].authorize(_ask(**params))
    assert isinstance(decision, ErrorPage)
    assert (decision.code, decision.status) == (code, 400)
    assert interactions.calls == []


@pytest.mark.parametrize(
    ("params", "error", "state"),
    [
        ({"nonce": "a\x00b"}, "invalid_request", "st"),
        ({"state": "s\x00t"}, "invalid_request", None),
        ({"request": "eyJ"}, "request_not_supported", "st"),
        ({"request_uri": "https://rp.example/r"}, "request_uri_not_supported", "st"),
        ({"max_age": "soon"}, "invalid_request", "st"),
        ({"max_age": "1" * 13}, "invalid_request", "st"),
        ({"prompt": "none", "max_age": "0"}, "login_required", "st"),
        ({"id_token_hint": "not-a-token"}, "invalid_request", "st"),
        ({"id_token_hint": "x" * 8193}, "invalid_request", "st"),
    ],
)
def test_a_bad_request_goes_back_to_the_validated_redirect_uri(
    params: dict[str, str], error: str, state: str | None
) -> None:
    decision = _sign_in(FakeInteractions(admitted=_admitted()))[0].authorize(_ask(**params))
    assert isinstance(decision, ClientError)
    assert (decision.redirect_uri, decision.error, decision.state) == (RP, error, state)


def test_a_cross_site_post_without_the_visitor_cookie_is_replayed_as_a_same_site_get() -> None:
    interactions = FakeInteractions()
    assert isinstance(_sign_in(interactions)[0].authorize(_ask("POST", None)), RetrySameSite)
    assert interactions.calls == []


def test_a_new_browser_gets_a_visitor_id_and_waits() -> None:
    interactions = FakeInteractions()
    decision = _sign_in(interactions)[0].authorize(_ask(visitor_id=None))
    assert isinstance(decision, Wait)
    assert decision.new_visitor and not decision.fresh
    assert decision.visitor_id and decision.visitor_id != VISITOR
    assert decision.params["state"] == "st" and decision.client is CLIENT
    assert interactions.calls == []  # a new browser has no admission to look up


def test_an_admitted_browser_is_sent_back_to_the_client_at_once() -> None:
    interactions = FakeInteractions(admitted=_admitted())
    decision = _sign_in(interactions)[0].authorize(_ask())
    assert isinstance(decision, RedirectToClient)
    assert decision.admission == _admitted() and decision.session_expires_at == NOW + 3600
    assert not decision.new_visitor
    assert interactions.calls == [("admission", VISITOR, "sale", {"cookie-of": "sale"}, True)]


def test_a_browser_not_admitted_waits_without_a_fresh_place() -> None:
    decision = _sign_in(FakeInteractions())[0].authorize(_ask())
    assert isinstance(decision, Wait)
    assert not decision.fresh and not decision.new_visitor and decision.visitor_id == VISITOR


@pytest.mark.parametrize("params", [{"prompt": "login"}, {"prompt": "consent login"}, {"max_age": "0"}])
def test_a_forced_login_waits_for_a_fresh_place_without_claiming_one(params: dict[str, str]) -> None:
    interactions = FakeInteractions(admitted=_admitted())
    decision = _sign_in(interactions)[0].authorize(_ask(**params))
    assert isinstance(decision, Wait)
    assert decision.fresh
    claim = "login" not in params.get("prompt", "")
    assert interactions.calls == [("admission", VISITOR, "sale", {"cookie-of": "sale"}, claim)]


@pytest.mark.parametrize(("max_age", "fresh"), [("99", True), ("100", False), ("3600", False), ("", False)])
def test_max_age_forces_a_fresh_place_once_the_admission_is_older(max_age: str, fresh: bool) -> None:
    decision = _sign_in(FakeInteractions(admitted=_admitted(admitted_at=NOW - 100)))[0].authorize(_ask(max_age=max_age))
    assert isinstance(decision, Wait if fresh else RedirectToClient)
    if isinstance(decision, Wait):
        assert decision.fresh


def test_prompt_none_without_a_forced_login_is_left_to_the_grant() -> None:
    # Not admitted and prompt=none: the authorization server answers login_required itself.
    decision = _sign_in(FakeInteractions())[0].authorize(_ask(prompt="none"))
    assert isinstance(decision, Wait)


def test_an_id_token_hint_of_this_browser_keeps_its_admission() -> None:
    decision = _sign_in(FakeInteractions(admitted=_admitted()))[0].authorize(_ask(id_token_hint=_id_token(VISITOR)))
    assert isinstance(decision, RedirectToClient)


def test_an_id_token_hint_of_another_visitor_is_not_this_browsers_login() -> None:
    hint = _id_token(OTHER_VISITOR)
    decision = _sign_in(FakeInteractions(admitted=_admitted()))[0].authorize(_ask(id_token_hint=hint))
    assert isinstance(decision, Wait)
    assert not decision.fresh


@pytest.mark.parametrize(
    "hint",
    [
        _id_token(VISITOR, audience="other-rp"),
        _id_token(VISITOR, issuer="https://elsewhere.example"),
        jwt.encode({"alg": "RS256", "kid": "k2"}, {"iss": ISSUER, "aud": "rp", "sub": "x"}, RSAKey.generate_key(2048)),
    ],
)
def test_an_id_token_hint_not_issued_by_us_to_this_client_is_refused(hint: str) -> None:
    decision = _sign_in(FakeInteractions(admitted=_admitted()))[0].authorize(_ask(id_token_hint=hint))
    assert isinstance(decision, ClientError)
    assert decision.error == "invalid_request"


# --- the waiting page of a parked request ------------------------------------------------------------


def _record(state: State = State.WAITING) -> InteractionRecord:
    params = {"client_id": "rp", "redirect_uri": RP, "state": "st"}
    return InteractionRecord("i" * 32, "rp", "sale", VISITOR, "r" * 22, 7, params, state.value, NOW - 60, NOW - 60)


def test_a_waiting_place_shows_the_waiting_page() -> None:
    decision = _sign_in(FakeInteractions(record=_record()))[0].resume("i" * 32, VISITOR)
    assert isinstance(decision, Waiting)
    assert decision.progress.state is State.WAITING and decision.progress.ahead == 3


def test_an_admitted_place_issues_the_code() -> None:
    interactions = FakeInteractions(record=_record(), progress_state=State.ADMITTED)
    decision = _sign_in(interactions)[0].resume("i" * 32, VISITOR)
    assert isinstance(decision, RedirectToClient)
    assert decision.params["state"] == "st" and decision.session_expires_at == NOW + 900
    assert interactions.calls == [("move", State.CODE_ISSUED)]


def test_a_request_parked_too_long_restarts_at_the_clients_login_page() -> None:
    interactions = FakeInteractions(record=_record(), progress_state=State.ADMITTED, too_long=True)
    decision = _sign_in(interactions)[0].resume("i" * 32, VISITOR)
    assert isinstance(decision, Restart)
    assert decision.initiate_login_uri == "https://rp.example/login" and decision.session_expires_at == NOW + 900
    assert interactions.calls == [("move", State.EXPIRED)]


@pytest.mark.parametrize(
    ("state", "progress", "moved"),
    [
        (State.WAITING, State.EXPIRED, True),
        (State.EXPIRED, State.WAITING, False),
        (State.ABANDONED, State.ADMITTED, False),
    ],
)
def test_an_expired_place_says_so(state: State, progress: State, moved: bool) -> None:
    interactions = FakeInteractions(record=_record(state), progress_state=progress)
    decision = _sign_in(interactions)[0].resume("i" * 32, VISITOR)
    assert isinstance(decision, ErrorPage)
    assert (decision.status, decision.code, decision.link) == (410, "place_expired", "https://rp.example/login")
    assert interactions.calls == ([("move", State.EXPIRED)] if moved else [])


def test_a_finished_request_cannot_finish_twice() -> None:
    with pytest.raises(InteractionFinishedError):
        _sign_in(FakeInteractions(record=_record(State.CODE_ISSUED)))[0].resume("i" * 32, VISITOR)


def test_a_place_that_cannot_be_used_is_explained_as_a_4xx() -> None:
    failure = IdpError("The queue store is unavailable.", status=503)
    interactions = FakeInteractions(record=_record(), progress_state=State.ADMITTED, admit_error=failure)
    decision = _sign_in(interactions)[0].resume("i" * 32, VISITOR)
    assert isinstance(decision, ErrorPage)
    assert decision.status == 400 and decision.title == "Your place cannot be used"


# --- logout ------------------------------------------------------------------------------------------


def _logout(
    visitor_id: str | None = VISITOR,
    *,
    confirmed: bool = False,
    client: ClientConfig | None = CLIENT,
    hint: dict[str, Any] | None = None,
    target: str = "",
    cookie_events: tuple[str, ...] = (),
) -> LogoutAsk:
    return LogoutAsk(visitor_id, confirmed, client, hint, target, cookie_events, lambda event_id: None)


def _claims(visitor_id: str, event_id: str = "sale") -> dict[str, Any]:
    return {"aud": ["rp"], "sub": pairwise_sub(LOOKUP, visitor_id, "rp"), "event_id": event_id}


def test_a_sign_out_without_this_browsers_hint_asks_for_a_confirmation() -> None:
    sessions = FakeSessions()
    sign_in, clock = _sign_in(FakeInteractions(admitted=_admitted()), sessions)
    decision = sign_in.logout(_logout(hint=_claims(OTHER_VISITOR), target="https://rp.example/bye"))
    assert isinstance(decision, ConfirmLogout)
    assert decision.form_action_origin == "https://rp.example"
    assert sessions.finished == []  # never the session a foreign hint names
    assert sign_in.logout_confirmed(VISITOR, decision.csrf)
    assert not sign_in.logout_confirmed(OTHER_VISITOR, decision.csrf)
    assert not sign_in.logout_confirmed(None, decision.csrf)
    clock.advance(LOGOUT_CONFIRM_SECONDS + 1)
    assert not sign_in.logout_confirmed(VISITOR, decision.csrf)


@pytest.mark.parametrize("token", ["", "abc", "123.", "9" * 13 + ".00", f"{NOW + 60}.{'0' * 64}"])
def test_a_forged_confirmation_is_not_a_confirmation(token: str) -> None:
    assert not _sign_in(FakeInteractions())[0].logout_confirmed(VISITOR, token)


def test_an_unregistered_target_does_not_widen_the_forms_reach() -> None:
    decision = _sign_in(FakeInteractions())[0].logout(_logout(target="https://evil.example/"))
    assert isinstance(decision, ConfirmLogout)
    assert decision.form_action_origin is None


def test_without_a_visitor_cookie_there_is_nothing_to_end() -> None:
    assert isinstance(_sign_in(FakeInteractions())[0].logout(_logout(None)), NothingToEnd)


def test_this_browsers_hint_ends_its_admission_without_a_confirmation() -> None:
    sessions = FakeSessions()
    sign_in = _sign_in(FakeInteractions(admitted=_admitted()), sessions)[0]
    decision = sign_in.logout(_logout(client=None, hint=_claims(VISITOR)))
    assert decision == EndSession(("sale",))
    assert sessions.finished == [("sale", "r" * 22, 1)]


def test_a_confirmed_sign_out_naming_no_client_ends_every_admission_of_the_browser() -> None:
    sessions = FakeSessions()
    sign_in = _sign_in(FakeInteractions(admitted=_admitted()), sessions)[0]
    decision = sign_in.logout(_logout(confirmed=True, client=None, cookie_events=("sale", "other")))
    assert decision == EndSession(("other", "sale"))
    assert sessions.finished == [("sale", "r" * 22, 1)]


def test_a_confirmed_sign_out_for_a_client_ends_only_that_clients_event() -> None:
    sessions = FakeSessions()
    sign_in = _sign_in(FakeInteractions(admitted=_admitted()), sessions)[0]
    decision = sign_in.logout(_logout(confirmed=True, hint=_claims(OTHER_VISITOR, "other"), cookie_events=("x",)))
    assert decision == EndSession(("sale",))
    assert sessions.finished == [("sale", "r" * 22, 1)]
