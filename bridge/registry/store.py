"""Reading and writing the registry's tables, inside the caller's transaction.

Plain functions taking an `AsyncSession`: the handlers decide what is allowed and group a
change with its audit entry in one transaction; these only say how it is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.registry import tables
from bridge.registry.manifest import Contents, Manifest, MemberEntry
from bridge.registry.model import FederationName, Fingerprint, Member, Peer, ServerName

STATE_ROW = 1


def aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time the bridge stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def member_id(session: AsyncSession, name: str) -> int | None:
    query = sa.select(tables.member.c.id).where(tables.member.c.name == name)
    found: int | None = (await session.execute(query)).scalar_one_or_none()
    return found


async def insert_member(session: AsyncSession, name: str, at: datetime) -> None:
    await session.execute(sa.insert(tables.member).values(name=name, added_at=at))


async def delete_member(session: AsyncSession, ident: int) -> None:
    await session.execute(
        sa.delete(tables.homeserver).where(tables.homeserver.c.member_id == ident)
    )
    await session.execute(sa.delete(tables.member).where(tables.member.c.id == ident))


async def homeservers_of(session: AsyncSession, ident: int) -> tuple[ServerName, ...]:
    query = (
        sa.select(tables.homeserver.c.server_name)
        .where(tables.homeserver.c.member_id == ident)
        .order_by(tables.homeserver.c.server_name)
    )
    return tuple(ServerName(s) for s in (await session.execute(query)).scalars())


async def owner_of(session: AsyncSession, server_name: str) -> str | None:
    """The member a homeserver belongs to."""
    query = (
        sa.select(tables.member.c.name)
        .join(tables.homeserver, tables.homeserver.c.member_id == tables.member.c.id)
        .where(tables.homeserver.c.server_name == server_name)
    )
    found: str | None = (await session.execute(query)).scalar_one_or_none()
    return found


async def insert_homeserver(
    session: AsyncSession, server_name: str, ident: int, at: datetime
) -> None:
    await session.execute(
        sa.insert(tables.homeserver).values(server_name=server_name, member_id=ident, added_at=at)
    )


async def delete_homeserver(session: AsyncSession, server_name: str) -> None:
    await session.execute(
        sa.delete(tables.homeserver).where(tables.homeserver.c.server_name == server_name)
    )


async def members(session: AsyncSession) -> list[Member]:
    """Every member with its homeservers, by name."""
    rows = (
        await session.execute(
            sa.select(
                tables.member.c.name, tables.member.c.added_at, tables.homeserver.c.server_name
            )
            .select_from(tables.member)
            .outerjoin(tables.homeserver, tables.homeserver.c.member_id == tables.member.c.id)
            .order_by(tables.member.c.name, tables.homeserver.c.server_name)
        )
    ).all()
    grouped: dict[str, tuple[datetime, list[ServerName]]] = {}
    for row in rows:
        entry = grouped.setdefault(row.name, (aware(row.added_at), []))
        if row.server_name is not None:
            entry[1].append(ServerName(row.server_name))
    return [Member(name, tuple(servers), at) for name, (at, servers) in grouped.items()]


async def visible_users(session: AsyncSession) -> list[str]:
    """Matrix IDs practitioners chose to publish (the directory's links marked visible)."""
    result = await session.execute(
        sa.text("SELECT matrix_id FROM directory_link WHERE visible = :yes ORDER BY matrix_id"),
        {"yes": True},
    )
    return [str(m) for m in result.scalars()]


async def contents(session: AsyncSession, own_server: str) -> Contents:
    """What our manifest says now; the bridge's own homeserver is always in it."""
    entries = [MemberEntry(m.name, m.homeservers) for m in await members(session)]
    return Contents.of(entries, [own_server], await visible_users(session))


def digest(value: Contents) -> str:
    text = json.dumps(value.body(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def version_for(session: AsyncSession, content_digest: str, at: datetime) -> int:
    """The manifest version for this content: the stored one, or one more if it changed.

    The conditional UPDATE is atomic per row, so two bridge processes serving the same
    database agree on the number (the second sees the digest already stored).
    """
    row = sa.select(tables.state.c.version, tables.state.c.content_digest).where(
        tables.state.c.id == STATE_ROW
    )
    current = (await session.execute(row)).first()
    if current is None:
        await session.execute(
            sa.insert(tables.state).values(
                id=STATE_ROW, version=1, content_digest=content_digest, changed_at=at
            )
        )
        return 1
    if current.content_digest == content_digest:
        return int(current.version)
    await session.execute(
        sa.update(tables.state)
        .where(tables.state.c.id == STATE_ROW, tables.state.c.content_digest != content_digest)
        .values(version=tables.state.c.version + 1, content_digest=content_digest, changed_at=at)
    )
    version: int = (await session.execute(row)).one().version
    return version


def _peer(row: Any) -> Peer:
    servers = tuple(ServerName(s) for s in json.loads(row.homeservers or "[]"))
    return Peer(
        url=row.url,
        fingerprint=Fingerprint(row.fingerprint),
        added_at=aware(row.added_at),
        name=FederationName(row.name) if row.name is not None else None,
        version=row.version,
        homeservers=servers,
        verified_at=aware(row.verified_at) if row.verified_at else None,
        expires_at=aware(row.expires_at) if row.expires_at else None,
        checked_at=aware(row.checked_at) if row.checked_at else None,
        problem=row.problem,
    )


async def peers(session: AsyncSession) -> list[Peer]:
    rows = (await session.execute(sa.select(tables.peer).order_by(tables.peer.c.url))).all()
    return [_peer(row) for row in rows]


async def peer(session: AsyncSession, url: str) -> Peer | None:
    row = (await session.execute(sa.select(tables.peer).where(tables.peer.c.url == url))).first()
    return None if row is None else _peer(row)


async def insert_peer(
    session: AsyncSession, url: str, fingerprint: Fingerprint, at: datetime
) -> None:
    await session.execute(
        sa.insert(tables.peer).values(url=url, fingerprint=fingerprint, added_at=at)
    )


async def delete_peer(session: AsyncSession, url: str) -> None:
    await session.execute(sa.delete(tables.peer).where(tables.peer.c.url == url))


async def accept_manifest(
    session: AsyncSession, url: str, fingerprint: Fingerprint, manifest: Manifest, at: datetime
) -> bool:
    """Store a verified manifest as the peer's last good one; False if the peer was removed,
    re-pinned to another key, or a newer manifest was stored meanwhile (another process)."""
    table = tables.peer
    result = await session.execute(
        sa.update(table)
        .where(
            table.c.url == url,
            table.c.fingerprint == fingerprint,
            sa.or_(table.c.version.is_(None), table.c.version <= manifest.version),
        )
        .values(
            name=manifest.federation,
            version=manifest.version,
            homeservers=json.dumps(list(manifest.contents.homeservers)),
            verified_at=at,
            expires_at=manifest.expires_at,
            checked_at=at,
            problem=None,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def record_problem(session: AsyncSession, url: str, problem: str, at: datetime) -> None:
    """Note a refused or failed fetch; the last good manifest stays as it is."""
    await session.execute(
        sa.update(tables.peer)
        .where(tables.peer.c.url == url)
        .values(checked_at=at, problem=problem[:500])
    )


async def claim_expiry(session: AsyncSession, url: str, now: datetime) -> bool:
    """True once per expiry of a peer's last good manifest: for the check that first sees it
    expired (the previous check was before the expiry). Atomic, so two bridge processes on
    one database note it once between them."""
    table = tables.peer
    result = await session.execute(
        sa.update(table)
        .where(
            table.c.url == url,
            table.c.expires_at <= now,
            sa.or_(table.c.checked_at.is_(None), table.c.checked_at < table.c.expires_at),
        )
        .values(checked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def own_homeservers(session: AsyncSession) -> list[ServerName]:
    result = await session.execute(sa.select(tables.homeserver.c.server_name))
    return [ServerName(s) for s in result.scalars()]


def peer_expiries(all_peers: Sequence[Peer], now: datetime) -> dict[ServerName, datetime]:
    """Each homeserver of a peer whose last good manifest is still valid at `now`, with the
    expiry of that manifest (the latest, should two peers list one server). Once it expires,
    the peer's servers leave the allow-list until a fresh manifest verifies."""
    found: dict[ServerName, datetime] = {}
    for p in all_peers:
        if p.stale(now) or p.expires_at is None:
            continue
        for server in p.homeservers:
            if server not in found or found[server] < p.expires_at:
                found[server] = p.expires_at
    return found


async def never_used(session: AsyncSession) -> bool:
    """Whether this registry never held anything: no member, no peer, no audit entry.

    What a lost database recreated empty looks like; a registry whose last member or peer an
    admin removed still has the audit entries of that removal.
    """
    from bridge.admin import tables as admin_tables  # the audit log lives with the admin

    for table in (tables.member, tables.peer, admin_tables.audit):
        if (await session.execute(sa.select(sa.literal(1)).select_from(table).limit(1))).first():
            return False
    return True
