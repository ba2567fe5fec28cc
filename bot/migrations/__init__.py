"""Alembic migrations of the bot's database, shipped inside the package.

`bot.store.BotDatabase.open` runs them at start (script location ``bot:migrations``), so an
installed bot needs no alembic.ini. The revision is recorded in ``bot_alembic_version``, so the
bridge may share the database. Revisions are numbered and append-only: never edit a released one.
"""
