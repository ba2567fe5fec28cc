"""Whether the bot's database is there: `caducee bot run` never creates it.

A lost volume, a failed mount or a wrong database name would otherwise give a bot that starts
with no memory of the commands it ran, the case rooms it opened or the messages it must
expire, and says nothing. Creating the database is an explicit step (`caducee bot init`, or
the demo's first start).
"""

from __future__ import annotations

from bot.store.database import missing_database

__all__ = ["missing_database"]
