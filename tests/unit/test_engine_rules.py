"""The queue engine's pure rules: input validation, the expiry arithmetic and the sweep's search."""

from __future__ import annotations

import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idp.errors import ValidationError
from idp.queue.engine import (
    INT64_MAX,
    Counters,
    admitted_at,
    is_expired,
    last_expired_position,
    validate_idempotency_key,
    validate_increment,
    validate_request_id,
)

pytestmark = pytest.mark.unit


# -- validate_request_id ---------------------------------------------------------------------------


@given(st.uuids())
def test_every_canonical_uuid_is_a_valid_request_id(value):
    assert validate_request_id(str(value)) == str(value)


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


@given(st.one_of(st.text(alphabet=string.hexdigits + "-{}\n ", max_size=40), st.text(max_size=40)))
def test_a_request_id_is_accepted_exactly_when_it_is_a_canonical_uuid(text):
    try:
        validate_request_id(text)
        accepted = True
    except ValidationError as exc:
        assert exc.code == "invalid_request_id"
        assert exc.status == 400
        accepted = False
    assert accepted == _is_canonical_uuid(text)


RID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize(
    "value",
    [
        RID.upper(),
        RID.replace("-", ""),
        "{" + RID + "}",
        "urn:uuid:" + RID,
        RID + "\n",
        "\n" + RID,
        RID[:-1],
        RID + "0",
        "",
        None,
        0,
        12345678,
        RID.encode(),
        [RID],
        {"id": RID},
        uuid.UUID(RID),
    ],
)
def test_request_id_forms_that_are_refused(value):
    with pytest.raises(ValidationError) as info:
        validate_request_id(value)
    assert info.value.code == "invalid_request_id"


# -- validate_increment ----------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=INT64_MAX))
def test_positive_int64_increments_are_accepted(value):
    assert validate_increment(value) == value


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=INT64_MAX + 1)))
def test_increments_outside_1_to_int64_max_are_refused(value):
    with pytest.raises(ValidationError) as info:
        validate_increment(value)
    assert info.value.code == "invalid_increment"


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, float("nan"), float("inf"), "1", "", None, [1], {"by": 1}])
def test_increments_that_are_not_integers_are_refused(value):
    with pytest.raises(ValidationError) as info:
        validate_increment(value)
    assert info.value.code == "invalid_increment"


# -- validate_idempotency_key ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_no_idempotency_key(value):
    assert validate_idempotency_key(value) is None


@given(st.text(max_size=210))
def test_an_idempotency_key_is_1_to_200_visible_ascii_characters(text):
    expected_ok = 1 <= len(text) <= 200 and all(0x21 <= ord(ch) <= 0x7E for ch in text)
    try:
        result = validate_idempotency_key(text)
    except ValidationError as exc:
        assert exc.code == "invalid_idempotency_key"
        assert not expected_ok
    else:
        assert expected_ok or text == ""
        assert result == (text or None)


@pytest.mark.parametrize("value", ["k" * 201, "has space", "tab\there", "line\n", "caf\xe9", "\x7f"])
def test_idempotency_keys_that_are_refused(value):
    with pytest.raises(ValidationError):
        validate_idempotency_key(value)


def test_the_longest_idempotency_key_is_accepted():
    assert validate_idempotency_key("k" * 200) == "k" * 200


# -- expiry arithmetic -----------------------------------------------------------------------------


def test_admission_is_the_later_of_entry_and_issue_time():
    assert admitted_at(100, None) == 100
    assert admitted_at(100, 250) == 250
    assert admitted_at(300, 250) == 300


def test_a_place_is_claimable_through_the_last_second_of_its_period():
    admitted, period = 1_000, 900
    assert not is_expired(admitted + period - 1, admitted, period)
    assert not is_expired(admitted + period, admitted, period)
    assert is_expired(admitted + period + 1, admitted, period)


# -- last_expired_position -------------------------------------------------------------------------


def _scan(low: int, high: int, expired) -> int:
    best = low - 1
    for position in range(low, high + 1):
        if expired(position):
            best = position
    return best


@given(
    low=st.integers(min_value=-5, max_value=200),
    length=st.integers(min_value=-3, max_value=300),
    threshold=st.integers(min_value=-10, max_value=520),
)
def test_the_binary_search_finds_the_end_of_any_expired_prefix(low, length, threshold):
    high = low + length
    calls: list[int] = []

    def expired(position: int) -> bool:
        calls.append(position)
        return position <= threshold

    assert last_expired_position(low, high, expired) == _scan(low, high, lambda p: p <= threshold)
    # O(log n) probes, never a scan, and never outside the range it was given.
    assert len(calls) <= 2 + max(0, length).bit_length()
    assert all(low <= position <= high for position in calls)


@st.composite
def _queues(draw):
    """Entry times (non-decreasing), serving raises (counter, issue time, both non-decreasing), a clock."""
    size = draw(st.integers(min_value=1, max_value=60))
    gaps = draw(st.lists(st.integers(min_value=0, max_value=50), min_size=size, max_size=size))
    entry_times = []
    t = 1_000
    for gap in gaps:
        t += gap
        entry_times.append(t)
    raises = draw(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 100)), max_size=8))
    issues = []
    counter, issue_time = 0, 1_000
    for step, wait in raises:
        counter += step
        issue_time += wait
        issues.append((counter, issue_time))
    period = draw(st.integers(min_value=0, max_value=300))
    now = draw(st.integers(min_value=1_000, max_value=t + 1_000))
    return entry_times, issues, period, now


@given(_queues())
def test_expiry_is_a_prefix_of_the_admitted_places_and_the_search_finds_its_end(queue):
    entry_times, issues, period, now = queue
    serving = issues[-1][0] if issues else 0
    limit = min(serving, len(entry_times))

    def issue_time(position: int) -> int | None:
        return next((when for counter, when in issues if counter >= position), None)

    def expired(position: int) -> bool:
        return is_expired(now, admitted_at(entry_times[position - 1], issue_time(position)), period)

    flags = [expired(p) for p in range(1, limit + 1)]
    assert flags == sorted(flags, reverse=True), "expired places must form a prefix"
    assert last_expired_position(1, limit, expired) == _scan(1, limit, expired)


# -- counters --------------------------------------------------------------------------------------


@given(
    queue=st.integers(min_value=0, max_value=INT64_MAX),
    tokens=st.integers(min_value=0, max_value=INT64_MAX),
    expired=st.integers(min_value=0, max_value=INT64_MAX),
)
def test_waiting_is_queued_minus_issued_minus_expired_and_never_negative(queue, tokens, expired):
    waiting = Counters(queue=queue, tokens=tokens, expired=expired).waiting
    assert waiting == max(0, queue - tokens - expired)
    assert waiting >= 0


def test_waiting_examples():
    assert Counters().waiting == 0
    assert Counters(queue=10, serving=4, tokens=3, expired=1).waiting == 6
    assert Counters(queue=2, tokens=2, expired=1).waiting == 0
