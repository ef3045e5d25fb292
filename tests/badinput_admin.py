"""Bad-input rows for the admin API (see tests/badinput.py for how rows become requests).

Every row carries a valid admin key, so the refusals come from input checks, not from authentication
(which tests/integration/test_admin_authz.py covers). Paths with ids use records the context hook makes:
the client ``badinput-client`` of the event ``sale``; deletes aim at ids that do not exist.
"""

from __future__ import annotations

from typing import Any

from tests.badinput import (
    EVENT_ID,
    HUGE,
    NOT_YET,
    REQUEST_ID,
    UNKNOWN_REQUEST_ID,
    WRONG_VALUES,
    Context,
    Endpoint,
    Field,
)

# Names accept any printable text, so only non-strings, empty, overlong and control characters are wrong.
WRONG_VALUES.setdefault(
    "label", (0, 1, -1, 1.5, HUGE, True, False, [], ["x"], {}, {"name": "x"}, "", " ", "x" * 5000, "\x00", "a\nb")
)

CLIENT_ID = "badinput-client"


def admin_context(services: Any, ctx: Context) -> None:
    """An admin key (in ``ctx.extra["admin_key"]``) and a client of the event."""
    _record, plaintext = services.admin_keys.create("bad-input", ["admin"])
    ctx.extra["admin_key"] = plaintext
    services.clients.create(
        {"client_id": CLIENT_ID, "event_id": ctx.event_id, "redirect_uris": ["https://rp.example/cb"]}
    )


def _auth(ctx: Context) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx.extra['admin_key']}"}


LIMIT = Field("limit", "10", kind="int", required=False)
EVENT_SETTINGS = (
    Field("queue_position_expiry_period", 60, kind="int", required=False),
    Field("token_validity_period", 600, kind="int", required=False),
    Field("enable_queue_position_expiry", True, kind="bool", required=False),
    Field("incr_serving_on_expiry", False, kind="bool", required=False),
    Field(
        "branding",
        {"title": "Sale"},
        kind="object",
        required=False,
        malformed=({"primary_color": "red"}, {"logo_url": "javascript:alert(1)"}, {"title": 5}),
    ),
    Field(
        "allowed_return_urls",
        ["https://shop.example/"],
        kind="list",
        required=False,
        malformed=(["javascript:alert(1)"], ["https://x.example/"] * 51),
    ),
    Field(
        "cors_origins",
        ["https://shop.example"],
        kind="list",
        required=False,
        malformed=(["https://shop.example/path"], ["*", "https://shop.example"], ["ftp://shop.example"]),
    ),
)
CLIENT_SETTINGS = (
    Field("max_parked_seconds", 120, kind="int", required=False, malformed=(86401,)),
    Field("require_pkce", True, kind="bool", required=False),
    Field(
        "initiate_login_uri",
        "https://rp.example/login",
        kind="url",
        required=False,
        malformed=("https://rp.example/login#frag",),
    ),
    Field("post_logout_redirect_uris", ["https://rp.example/"], kind="list", required=False),
    Field(
        "token_endpoint_auth_methods",
        ["client_secret_post"],
        kind="list",
        required=False,
        # ["none"] alone registers a public client; mixed with a secret method it is refused.
        malformed=(["none", "client_secret_post"], ["private_key_jwt"]),
    ),
    Field("id_token_signed_response_alg", "ES256", required=False),
    Field("token_endpoint_auth_method", "client_secret_basic", required=False, malformed=("private_key_jwt", "")),
    Field(
        "allowed_cors_origins",
        ["https://spa.example"],
        kind="list",
        required=False,
        malformed=(["*"], ["https://spa.example/app"], ["spa.example"]),
    ),
    Field("refresh_token_rotation", True, kind="bool", required=False),
)
REDIRECT_URIS = Field(
    "redirect_uris",
    ["https://rp.example/cb"],
    kind="list",
    malformed=(["http://"], ["https://rp.example/cb#x"], ["https://rp.example/a b"]),
)
EVENT_PATHS = frozenset({"GET", "PATCH", "DELETE"})

ADMIN_ENDPOINTS: list[Endpoint] = [
    # The AWS private operations.
    Endpoint(
        "POST",
        "/admin/api/increment_serving_counter",
        "json",
        (EVENT_ID, Field("increment_by", 1, kind="int", malformed=(2**63, -(2**63), 10**30))),
        headers=_auth,
    ),
    Endpoint(
        "POST",
        "/admin/api/update_session",
        "json",
        (EVENT_ID, REQUEST_ID, Field("status", 1, kind="int", malformed=(2, -2, 1.0, -1.0))),
        headers=_auth,
    ),
    Endpoint("GET", "/admin/api/num_active_tokens", "query", (EVENT_ID,), headers=_auth),
    Endpoint(
        "GET",
        "/admin/api/expired_tokens",
        "query",
        (
            EVENT_ID,
            LIMIT,
            Field(
                "cursor",
                "1:" + UNKNOWN_REQUEST_ID,
                required=False,
                malformed=("1:not-a-uuid", "x" * 600, ":" + UNKNOWN_REQUEST_ID),
            ),
        ),
        headers=_auth,
    ),
    Endpoint("POST", "/admin/api/reset_initial_state", "json", (EVENT_ID,), headers=_auth),
    Endpoint(
        "POST",
        "/admin/api/generate_token",
        "json",
        (
            EVENT_ID,
            REQUEST_ID,
            Field(
                "issuer",
                "https://issuer.example",
                kind="url",
                required=False,
                malformed=("https://issuer.example/?q=1", "https://" + "a" * 400),
            ),
            Field("validity_period", 60, kind="int", required=False, malformed=(10 * 365 * 86400 + 1,)),
        ),
        headers=_auth,
        also_ok=NOT_YET,
    ),
    # Events.
    Endpoint("GET", "/admin/api/events", "query", (LIMIT,), methods=frozenset({"GET", "POST"}), headers=_auth),
    Endpoint(
        "POST",
        "/admin/api/events",
        "json",
        (Field("event_id", "fresh-event", malformed=EVENT_ID.malformed), *EVENT_SETTINGS),
        methods=frozenset({"GET", "POST"}),
        headers=_auth,
    ),
    Endpoint("GET", "/admin/api/events/sale", methods=EVENT_PATHS, headers=_auth),
    Endpoint("PATCH", "/admin/api/events/sale", "json", EVENT_SETTINGS, methods=EVENT_PATHS, headers=_auth),
    Endpoint("DELETE", "/admin/api/events/no-such-event", methods=EVENT_PATHS, headers=_auth),
    Endpoint("GET", "/admin/api/events/sale/stats", headers=_auth),
    Endpoint("GET", "/admin/api/events/sale/abuse", headers=_auth),
    # Clients.
    Endpoint(
        "GET",
        "/admin/api/clients",
        "query",
        (Field("event_id", "sale", required=False, unknown="no-such-event", malformed=EVENT_ID.malformed), LIMIT),
        methods=frozenset({"GET", "POST"}),
        headers=_auth,
    ),
    Endpoint(
        "POST",
        "/admin/api/clients",
        "json",
        (EVENT_ID, REDIRECT_URIS, *CLIENT_SETTINGS),
        methods=frozenset({"GET", "POST"}),
        headers=_auth,
    ),
    Endpoint("GET", f"/admin/api/clients/{CLIENT_ID}", methods=EVENT_PATHS, headers=_auth),
    Endpoint(
        "PATCH",
        f"/admin/api/clients/{CLIENT_ID}",
        "json",
        (
            Field("redirect_uris", ["https://rp.example/cb"], kind="list", required=False, malformed=(["http://"], [])),
            Field("event_id", "sale", required=False, unknown="no-such-event", malformed=EVENT_ID.malformed),
            *CLIENT_SETTINGS,
        ),
        methods=EVENT_PATHS,
        headers=_auth,
    ),
    Endpoint("DELETE", "/admin/api/clients/no-such-client", methods=EVENT_PATHS, headers=_auth),
    Endpoint("POST", f"/admin/api/clients/{CLIENT_ID}/rotate_secret", headers=_auth),
    Endpoint("POST", "/admin/api/clients/no-such-client/rotate_secret", headers=_auth),
    # Signing keys.
    Endpoint("GET", "/admin/api/keys", headers=_auth),
    Endpoint(
        "POST",
        "/admin/api/keys/rotate",
        "json",
        (Field("alg", "ES256", required=False, malformed=("HS256", "none", "rs256")),),
        headers=_auth,
    ),
    # Admin keys and the audit log.
    Endpoint("GET", "/admin/api/admin_keys", "query", (LIMIT,), methods=frozenset({"GET", "POST"}), headers=_auth),
    Endpoint(
        "POST",
        "/admin/api/admin_keys",
        "json",
        (
            Field("name", "ops", kind="label"),
            Field("scopes", ["events:read"], kind="list", malformed=(["root"], [], ["admin"] * 10, "events:read,root")),
        ),
        methods=frozenset({"GET", "POST"}),
        headers=_auth,
    ),
    Endpoint("DELETE", "/admin/api/admin_keys/0123456789abcdef", headers=_auth),
    Endpoint("DELETE", "/admin/api/admin_keys/not-a-key-id", headers=_auth),
    Endpoint("GET", "/admin/api/audit", "query", (LIMIT,), headers=_auth),
    Endpoint("GET", "/admin/api/openapi.yaml"),
    # Pages whose data comes from the admin API: they take no input at all.
    Endpoint("GET", "/admin/console"),
    Endpoint("GET", "/"),
]
