"""The bot's sync loop survives what nio's own loop dies of, and recovers quickly.

- `CaduceeClient.keys_query` with nothing left to query does nothing: nio raises there, and
  its sync loop died whenever the bot's query before a send had just answered the same
  question (the bot then stopped syncing for a growing pause).
- `sync_retry_delay`: 1 s, doubling while failures follow each other, reset once a sync loop
  has run a full minute.
- After an outage, however long, the bot tries the homeserver again within a few seconds
  (nio's retries and the sync loop's), so it answers within 10 s of the homeserver's return.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from nio import AsyncClientConfig

from bot.matrix.client import CaduceeClient
from bot.runner import SYNC_RECOVERED_AFTER_S, SYNC_RETRY_MAX_S, client_config, sync_retry_delay


async def test_a_key_query_with_nothing_to_ask_does_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    client = CaduceeClient(
        "http://127.0.0.1:9",  # never called: nothing to query
        "@caducee:hs-a.test",
        device_id="BOTDEVICE",
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, pickle_key=secrets.token_urlsafe(24)),
    )
    try:
        client.restore_login("@caducee:hs-a.test", "BOTDEVICE", "not-a-real-token")
        assert client.olm is not None
        assert not client.users_for_key_query
        assert await client.keys_query() is None
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("previous", "ran_for", "expected"),
    [
        (0.0, 0.0, 1.0),  # first failure
        (1.0, 0.5, 2.0),  # failing again at once: back off
        (32.0, 3.0, SYNC_RETRY_MAX_S),  # capped
        (SYNC_RETRY_MAX_S, 1.0, SYNC_RETRY_MAX_S),
        (SYNC_RETRY_MAX_S, SYNC_RECOVERED_AFTER_S, 1.0),  # it had recovered: start over
        (8.0, 3600.0, 1.0),
    ],
)
def test_the_pause_after_a_failed_sync(previous: float, ran_for: float, expected: float) -> None:
    assert sync_retry_delay(previous, ran_for) == expected


async def test_after_a_long_outage_the_homeserver_is_tried_again_within_seconds(
    tmp_path: Path,
) -> None:
    """Homeserver back after an hour down: the next attempt comes within `SYNC_RETRY_MAX_S`
    from nio's retries and from the sync loop, so a doctor gets an answer within 10 s."""
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    client = CaduceeClient(
        "http://127.0.0.1:9",
        "@caducee:hs-a.test",
        store_path=str(store),
        config=client_config(secrets.token_urlsafe(24)),
    )
    try:
        waits = [await client.get_timeout_retry_wait_time(n) for n in range(1, 2000)]
    finally:
        await client.close()
    assert max(waits) <= SYNC_RETRY_MAX_S <= 5.0
    delay = 0.0
    for _ in range(1000):  # an hour of failures in a row
        delay = sync_retry_delay(delay, ran_for=0.1)
    assert delay <= SYNC_RETRY_MAX_S
