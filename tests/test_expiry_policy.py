"""The expiry rules, without any server: what expires, when, in which order, backoff."""

from __future__ import annotations

import pytest

from bot.durations import DurationError
from bot.expiry.policy import (
    Pending,
    Verdict,
    backoff_ms,
    due_ms,
    is_expirable,
    judge,
    lifetime_ms_within_bounds,
    local_media,
    media_uris,
    next_wake_ms,
    pack_media,
    percentile,
    ready,
    redaction_txn_id,
    retention_content,
    split_mxc,
    unpack_media,
)
from bot.ids import EventId, RoomId


@pytest.mark.parametrize(
    "event_type",
    [
        "m.room.message",
        "m.room.encrypted",
        "m.reaction",
        "m.sticker",
        "m.poll.start",
        "org.matrix.msc3381.poll.response",
        "m.call.invite",
        "com.example.custom",
    ],
)
def test_every_message_like_event_expires(event_type: str) -> None:
    assert is_expirable(event_type, is_state=False)


def test_state_and_redactions_never_expire() -> None:
    assert not is_expirable("m.room.member", is_state=True)
    assert not is_expirable("m.room.retention", is_state=True)
    assert not is_expirable("m.room.message", is_state=True)  # state keyed on a message type
    assert not is_expirable("m.room.redaction", is_state=False)


def test_due_time_is_origin_plus_lifetime() -> None:
    assert due_ms(1_000_000, 30_000) == 1_030_000


def test_a_server_clock_ahead_does_not_extend_the_lifetime() -> None:
    # Remote stamps its event an hour in the future; we saw it now.
    assert due_ms(origin_server_ts=3_600_000 + 5_000, lifetime_ms=10_000, seen_ms=5_000) == 15_000
    # An old event (back-filled) keeps its own, earlier, time.
    assert due_ms(origin_server_ts=1_000, lifetime_ms=10_000, seen_ms=99_000) == 11_000


def test_lifetime_bounds_are_the_federations() -> None:
    assert lifetime_ms_within_bounds(3600, 30, 86400) == 3_600_000
    with pytest.raises(DurationError, match="30s"):
        lifetime_ms_within_bounds(10, 30, 86400)
    with pytest.raises(DurationError, match="1d"):
        lifetime_ms_within_bounds(2 * 86400, 30, 86400)


def test_homeservers_purge_a_margin_after_the_redaction() -> None:
    assert retention_content(86_400_000) == {"max_lifetime": 86_400_000 + 600_000}
    assert retention_content(4_000, margin_ms=3_000) == {"max_lifetime": 7_000}


def _p(event: str, origin: int, due: int, next_try: int | None = None) -> Pending:
    return Pending(
        RoomId("!r:x"), EventId(event), origin, due, due if next_try is None else next_try
    )


def test_overdue_first_then_oldest_first() -> None:
    # After downtime: c is the most overdue (short lifetime in another room), then a, then b.
    items = [
        _p("$b", origin=2_000, due=12_000),
        _p("$a", origin=1_000, due=11_000),
        _p("$c", origin=5_000, due=6_000),
        _p("$tie-newer", origin=3_000, due=11_000),
    ]
    assert [p.event_id for p in ready(items, now_ms=20_000)] == ["$c", "$a", "$tie-newer", "$b"]


def test_not_yet_due_and_backing_off_entries_wait() -> None:
    items = [
        _p("$due", origin=0, due=1_000),
        _p("$later", origin=0, due=50_000),
        _p("$backoff", origin=0, due=1_500, next_try=40_000),
    ]
    assert [p.event_id for p in ready(items, now_ms=10_000)] == ["$due"]
    assert [p.event_id for p in ready(items, now_ms=45_000, limit=1)] == ["$due"]
    assert next_wake_ms(items) == 1_000
    assert next_wake_ms([]) is None


def test_backoff_grows_then_caps() -> None:
    assert [backoff_ms(n) for n in (1, 2, 3, 4)] == [1_000, 2_000, 4_000, 8_000]
    assert backoff_ms(50) == 300_000


def test_backoff_honours_retry_after_even_above_the_cap() -> None:
    assert backoff_ms(1, retry_after_ms=7_500) == 7_500
    assert backoff_ms(4, retry_after_ms=10) == 8_000
    assert backoff_ms(1, retry_after_ms=900_000) == 900_000


@pytest.mark.parametrize(
    ("errcode", "status", "verdict"),
    [
        (None, 200, Verdict.DONE),
        (None, None, Verdict.RETRY_LATER),  # transport failure
        ("M_NOT_FOUND", 404, Verdict.DONE),  # purged / unknown: nothing left to redact
        (None, 404, Verdict.DONE),
        ("M_LIMIT_EXCEEDED", 429, Verdict.RETRY_LATER),
        ("M_UNKNOWN", 500, Verdict.RETRY_LATER),
        (None, 502, Verdict.RETRY_LATER),
        ("M_FORBIDDEN", 403, Verdict.RETRY_EVENT),
        ("M_FORBIDDEN", None, Verdict.RETRY_EVENT),  # errcode without a known status
        ("M_LIMIT_EXCEEDED", None, Verdict.RETRY_LATER),
        ("M_BAD_JSON", 400, Verdict.RETRY_EVENT),
    ],
)
def test_redaction_results_are_judged(
    errcode: str | None, status: int | None, verdict: Verdict
) -> None:
    assert judge(errcode, status) is verdict


def test_transaction_id_is_stable_per_event() -> None:
    first = redaction_txn_id("!r:x", "$e1")
    assert first == redaction_txn_id("!r:x", "$e1")
    assert first != redaction_txn_id("!r:x", "$e2")
    assert first != redaction_txn_id("!s:x", "$e1")


def test_media_uris_of_plain_and_encrypted_attachments() -> None:
    encrypted_image = {
        "msgtype": "m.image",
        "body": "scan.png",
        "file": {"url": "mxc://a.example/blob", "key": {"k": "secret"}},
        "info": {"thumbnail_file": {"url": "mxc://a.example/thumb"}},
    }
    assert media_uris(encrypted_image) == ("mxc://a.example/blob", "mxc://a.example/thumb")
    plain = {"url": "mxc://b.example/x", "info": {"thumbnail_url": "mxc://b.example/x"}}
    assert media_uris(plain) == ("mxc://b.example/x",)
    assert media_uris({"body": "hello", "url": "https://evil.example/x"}) == ()


def test_only_local_media_is_deleted_and_malformed_uris_are_ignored() -> None:
    uris = ["mxc://localhost:8481/abc", "mxc://localhost:8482/def", "mxc://bad", "http://x/y"]
    assert local_media(uris, "localhost:8481") == ["abc"]
    assert split_mxc("mxc://s/m/extra") is None
    assert unpack_media(pack_media(uris)) == (
        "mxc://localhost:8481/abc",
        "mxc://localhost:8482/def",
    )
    assert pack_media([]) is None


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
