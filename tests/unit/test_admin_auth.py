"""Admin key parsing, scopes and the Bearer header, without any service."""

from __future__ import annotations

import pytest

from idp.admin.audit import scrub
from idp.admin.auth import require_scope
from idp.admin.keys import SCOPES, clean_name, clean_scopes, parse_key, scope_granted
from idp.errors import ValidationError
from idp.web.bearer import bearer_token

pytestmark = pytest.mark.unit

KEY_ID = "0123456789abcdef"
SECRET = "A" * 43


@pytest.mark.parametrize(
    ("held", "needed", "granted"),
    [
        (["admin"], "events:read", True),
        (["admin"], "keys:write", True),
        (["events:write"], "events:read", True),
        (["events:read"], "events:write", False),
        (["clients:write"], "events:read", False),
        (["keys:write"], "clients:write", False),
        (["events:read", "events:write", "clients:write", "keys:write"], "admin", False),
        ([], "events:read", False),
    ],
)
def test_scope_granted(held: list[str], needed: str, granted: bool) -> None:
    assert scope_granted(held, needed) is granted


def test_parse_key_accepts_only_the_exact_shape() -> None:
    assert parse_key(f"idpk_{KEY_ID}_{SECRET}") == (KEY_ID, SECRET)
    assert parse_key(f"idpk_{KEY_ID}_with_under_scores-and-dashes") == (KEY_ID, "with_under_scores-and-dashes")
    for bad in (
        "",
        "idpk",
        f"idpk_{KEY_ID}",
        f"idpk_{KEY_ID}_",
        f"IDPK_{KEY_ID}_{SECRET}",
        f"idpk_{KEY_ID.upper()}_{SECRET}",
        f"idpk_{KEY_ID}0_{SECRET}",
        f"idpk_{KEY_ID}_{SECRET}\n",
        f" idpk_{KEY_ID}_{SECRET}",
        f"idpk_{KEY_ID}_short",
        f"idpk_{KEY_ID}_{SECRET}=",
        f"idpk_{KEY_ID}_{'a' * 101}",
    ):
        assert parse_key(bad) is None, bad


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        (" Bearer abc", "abc"),
        ("Bearer\tabc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_clean_scopes() -> None:
    assert clean_scopes(["events:read", "events:read", "admin"]) == ["events:read", "admin"]
    assert clean_scopes("events:read, keys:write") == ["events:read", "keys:write"]
    for bad in ([], "", ["root"], ["events:read", "x"], "admin,root", None, 5, [1], list(SCOPES) + ["admin"]):
        with pytest.raises(ValidationError):
            clean_scopes(bad)


def test_clean_name() -> None:
    assert clean_name("  ops  ") == "ops"
    for bad in ("", "   ", "a\nb", "\x00", "x" * 201, 5, None, ["ops"]):
        with pytest.raises(ValidationError):
            clean_name(bad)


def test_require_scope_refuses_unknown_scopes() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("events:delete")
    assert require_scope("events:read")(lambda: None).required_scope == "events:read"  # type: ignore[attr-defined]


def test_audit_details_drop_secret_fields() -> None:
    assert scrub({"name": "x", "client_secret": "s", "key": "k", "token": "t", "scopes": ["admin"]}) == {
        "name": "x",
        "scopes": ["admin"],
    }
