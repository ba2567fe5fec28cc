"""Pieces both services (the bot and the bridge) need the same way: loading a configuration
file, migrating a database at start, ending a command (exit statuses). Only the standard library,
pydantic, PyYAML, SQLAlchemy, Alembic and typer are imported here, so the bot may use them
without pulling in the bridge's web stack.
"""
