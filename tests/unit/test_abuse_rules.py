"""The abuse defence's pure parts: limit specs, client addresses, challenges, passes and decoy ids."""

from __future__ import annotations

import uuid

import pytest

from idp.abuse.challenge import Passes, ProofOfWork, Signer, leading_zero_bits, solve, solves
from idp.abuse.limits import DEFAULT_LIMITS, LimitSpec, client_address, parse_limit

pytestmark = pytest.mark.unit


class MemorySpent:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def spend(self, nonce: str, expires_at: int) -> bool:
        if nonce in self.seen:
            return False
        self.seen.add(nonce)
        return True


def test_defaults_apply_and_names_can_be_replaced_or_switched_off() -> None:
    spec = LimitSpec.parse("join=10/second,500/hour; token=off")
    assert [str(i) for i in spec.for_name("join")] == [str(i) for i in parse_limit("10/second,500/hour", "x")]
    assert spec.for_name("token") == ()
    assert [str(i) for i in spec.for_name("admin_auth")] == [
        str(i) for i in parse_limit(DEFAULT_LIMITS["admin_auth"], "x")
    ]
    assert LimitSpec.parse("off").for_name("join") == ()
    assert [str(i) for i in spec.for_name("join", {"join": "7/minute"})] == [
        str(i) for i in parse_limit("7/minute", "x")
    ]


@pytest.mark.parametrize("bad", ["", "many", "10/fortnight", "0/minute", "1/minute;2/second", "x" * 300])
def test_malformed_limits_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_limit(bad, "join")


def test_the_client_address_follows_proxy_hops_like_proxyfix() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 2.2.2.2, 3.3.3.3"}
    assert client_address(environ, 0) == "10.0.0.1"
    assert client_address(environ, 1) == "3.3.3.3"
    assert client_address(environ, 2) == "2.2.2.2"
    assert client_address(environ, 4) == "10.0.0.1"  # fewer hops than trusted: the peer itself
    assert client_address({"REMOTE_ADDR": "10.0.0.1"}, 1) == "10.0.0.1"


def test_leading_zero_bits_and_solutions() -> None:
    assert leading_zero_bits(b"\x00\x00\x80") == 16
    assert leading_zero_bits(b"\x00\x01") == 15
    assert leading_zero_bits(b"\xff") == 0
    solution = solve("abc", 10)
    assert solves("abc", solution, 10)
    assert not all(solves("abc", str(n), 10) for n in range(50))


def test_a_challenge_is_bound_to_event_client_difficulty_time_and_single_use() -> None:
    signer = Signer("k" * 40)
    pow_ = ProofOfWork(signer, MemorySpent())
    issued = pow_.issue("sale", "192.0.2.1", 6, now=1000)
    token = str(issued["challenge"])
    solution = solve(token, 6)
    assert not pow_.check("other", "192.0.2.1", token, solution, 6, now=1000)
    assert not pow_.check("sale", "192.0.2.2", token, solution, 6, now=1000)
    assert not pow_.check("sale", "192.0.2.1", token, solution, 7, now=1000)  # the event asks for more now
    assert not pow_.check("sale", "192.0.2.1", token, solution, 6, now=1000 + 120)
    assert not pow_.check("sale", "192.0.2.1", token[:-2] + "AA", solution, 6, now=1000)
    assert not pow_.check("sale", "192.0.2.1", token, "not-a-number", 6, now=1000)
    assert pow_.check("sale", "192.0.2.1", token, solution, 6, now=1000)
    assert not pow_.check("sale", "192.0.2.1", token, solution, 6, now=1000)  # replayed


def test_a_pass_is_single_use_and_bound_like_a_challenge() -> None:
    signer = Signer("k" * 40)
    passes = Passes(signer, MemorySpent())
    token = passes.issue("sale", "192.0.2.1", "proof_of_work", now=1000)
    assert not passes.redeem("sale", "192.0.2.9", token, now=1000)
    assert not Passes(Signer("other" * 10), MemorySpent()).redeem("sale", "192.0.2.1", token, now=1000)
    assert passes.redeem("sale", "192.0.2.1", token, now=1000)
    assert not passes.redeem("sale", "192.0.2.1", token, now=1000)


def test_decoy_ids_look_like_uuid4_and_only_the_signer_reads_them() -> None:
    signer = Signer("k" * 40)
    for position in (1, 999, 2**31):
        decoy = signer.decoy_id(position)
        assert str(uuid.UUID(decoy)) == decoy and uuid.UUID(decoy).version == 4
        assert signer.decoy_position(decoy) == position
        assert Signer("z" * 40).decoy_position(decoy) is None
    assert signer.decoy_position(str(uuid.uuid4())) is None
    assert signer.decoy_position("not-an-id") is None


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_limits_count_ipv4_addresses_and_ipv6_networks(address: str, subject: str) -> None:
    from idp.abuse.limits import limit_subject

    assert limit_subject(address) == subject
