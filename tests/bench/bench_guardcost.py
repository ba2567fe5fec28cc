"""What the guard costs a homeserver: encrypted events persisted per second, with and without it.

    python -m tests.bench guardcost [--events N] [--senders S] [--rooms R] [--rounds K]

Two homeservers from the local launcher, started in the same run on the same machine: one as
the demo configures it (the Caducée guard loaded), one identical but for its ``modules``
list, emptied. Each gets the same stream: S practitioners sending Megolm ``m.room.encrypted``
events (real vodozemac ciphertext, as Element sends it) into R encrypted case rooms, all
senders at once, each waiting for its previous event to be persisted before the next, as a
client does. The two servers take turns in rounds of N/K events (guarded, bare, bare,
guarded, ...), so a change in the machine's load weighs on both alike.

Figure: events persisted per second on each, and guarded / bare (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from bot.commands.rooms import build_case_room_body
from bot.ids import UserId
from deploy.local.ca import ensure_ca
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation, RegisteredUser
from tests.conftest import free_port
from tests.megolm_support import megolm_content

TARGET = 0.9
_txn = itertools.count()


class BareHomeserver(Homeserver):
    """The same homeserver with no module loaded: the guard's same-run baseline."""

    def prepare(self) -> None:
        super().prepare()
        config = yaml.safe_load(self.config_path.read_text())
        config["modules"] = []
        self.config_path.write_text(yaml.safe_dump(config))


class Stream:
    """One homeserver's senders and rooms, ready to send."""

    def __init__(self, hs: Homeserver, http: aiohttp.ClientSession) -> None:
        self.hs = hs
        self.http = http
        self.senders: list[RegisteredUser] = []
        self.room_of: dict[str, str] = {}

    async def _call(
        self, user: RegisteredUser, method: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        url = f"{self.hs.client_url}/_matrix/client/v3{path}"
        headers = {"Authorization": f"Bearer {user.access_token}"}
        async with self.http.request(method, url, json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{self.hs.name}: {method} {path}: {response.status} {answer}")
            return answer

    async def set_up(self, senders: int, rooms: int) -> None:
        self.senders = [
            await self.hs.register_user(f"sender{i}", secrets.token_urlsafe(16))
            for i in range(senders)
        ]
        for r in range(rooms):
            members = self.senders[r::rooms]
            creator, others = members[0], members[1:]
            body = build_case_room_body(
                label=f"charge-{r}",
                requester=UserId(creator.user_id),
                bot=UserId(creator.user_id),
                ttl_seconds=7 * 86400,
                invite=[UserId(o.user_id) for o in others],
                room_version="12",
            )
            body["power_level_content_override"]["users"] = {}  # the creator is the sender
            room_id = (await self._call(creator, "POST", "/createRoom", body))["room_id"]
            for other in others:
                await self._call(other, "POST", f"/rooms/{quote(room_id)}/join", {})
            for member in members:
                self.room_of[member.user_id] = room_id

    async def send(self, contents: list[dict[str, Any]]) -> float:
        """Send ``contents`` spread over the senders, all at once; returns the seconds."""

        async def one_sender(index: int) -> None:
            user = self.senders[index]
            room = quote(self.room_of[user.user_id])
            for content in contents[index :: len(self.senders)]:
                txn = f"g{next(_txn)}"
                await self._call(user, "PUT", f"/rooms/{room}/send/m.room.encrypted/{txn}", content)

        started = time.perf_counter()
        await asyncio.gather(*(one_sender(i) for i in range(len(self.senders))))
        return time.perf_counter() - started


async def run(events: int, senders: int, rooms: int, rounds: int) -> dict[str, float]:
    contents = [megolm_content(f"note {i} " + "x" * (i % 200)) for i in range(events)]
    per_round = events // rounds
    with tempfile.TemporaryDirectory(prefix="caducee-bench-guardcost-") as tmp:
        base = Path(tmp)
        specs = {
            name: HomeserverSpec(name, free_port(), free_port(), free_port(), testing=True)
            for name in ("guarded", "bare")
        }
        federation = LocalFederation(base / "federation", list(specs.values()))
        ca = ensure_ca(federation.base_dir / "ca")
        federation.homeservers["bare"] = BareHomeserver(
            specs["bare"], federation.base_dir / "hs-bare", ca
        )
        await federation.start()
        try:
            modules = {
                name: yaml.safe_load(federation[name].config_path.read_text())["modules"]
                for name in specs
            }
            assert modules["bare"] == [] and modules["guarded"], modules
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
                streams = {name: Stream(federation[name], http) for name in specs}
                for stream in streams.values():
                    await stream.set_up(senders, rooms)
                warm_up = contents[: min(len(contents), 4 * senders)]
                for stream in streams.values():
                    await stream.send(warm_up)
                seconds = dict.fromkeys(specs, 0.0)
                sent = dict.fromkeys(specs, 0)
                for r in range(rounds):
                    order = ("guarded", "bare") if r % 2 == 0 else ("bare", "guarded")
                    chunk = contents[r * per_round : (r + 1) * per_round]
                    for name in order:
                        seconds[name] += await streams[name].send(chunk)
                        sent[name] += len(chunk)
        finally:
            federation.stop()
    return {name: sent[name] / seconds[name] for name in specs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench guardcost")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    rates = asyncio.run(run(args.events, args.senders, args.rooms, args.rounds))
    ratio = rates["guarded"] / rates["bare"]
    print(
        f"m.room.encrypted persisted, {args.senders} senders in {args.rooms} rooms, "
        f"{args.events} events each, {args.rounds} alternating rounds:"
    )
    print(f"  guard loaded:  {rates['guarded']:7.1f} events/s")
    print(f"  no module:     {rates['bare']:7.1f} events/s")
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"  ratio {ratio:.2f}x (target >= {TARGET}x): {verdict}")


if __name__ == "__main__":
    main()
