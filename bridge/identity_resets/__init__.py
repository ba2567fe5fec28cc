"""The bot's pending identity resets, as the bridge keeps them for the console.

A doctor who resets their cryptographic identity (Element reinstalled without the recovery
key) is held by the bot until the reset is confirmed (`bot.identity`). The bot alone decides:
it holds the pins, and accepting a reset is done on the bot's host (`caducee bot
accept-identity`) or by the doctor from an earlier session. The bridge only *shows* the list,
so a federation admin learns of a held doctor from the console instead of the bot's log.

- `model`: the report the bot sends, read and checked (pure), and what changed since the last.
- `store`: the latest report per reporting bot, and the audit lines of each change.
- `routes`: ``PUT /_caducee/v1/bot/identity-resets``, for the bot's service token only.

Nothing secret travels: Matrix IDs, times, and the doctors' public master keys (published by
their homeserver to anyone who asks).
"""
