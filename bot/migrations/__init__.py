"""Alembic migrations of the bot's database, shipped inside the package.

`BotStore.open` runs them at start (script location ``bot:migrations``), so an installed bot
needs no alembic.ini. Revisions are numbered and append-only: never edit a released one.
"""
