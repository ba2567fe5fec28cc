"""Numbered revisions (0001, 0002, ...). Alembic reads them; this file only makes the folder a
package so it is installed with the bot."""
