"""A doctor whose cryptographic identity changed: what they are told, and how it is accepted.

The bot pins each doctor's cross-signing master key the first time it sees it
(`bot.crypto.trust`). When a doctor resets their identity (a new phone, Element reinstalled
without the recovery key) the new key is *pending*: none of their devices gets the bot's room
keys, because the homeserver alone can reset an identity (an admin can set a password and
upload new cross-signing keys), and the bot must not send its answers to such a device on
the homeserver's word.

The doctor never meets a silent bot: each command they send while the reset is pending is
answered (`texts.EXPLAIN`, French and English) with a message that their devices *can* read,
encrypted with a room key made for that one fixed text (`notice.send_readable`). The reset is
accepted by

- the doctor, with ``!identity confirm <code>`` sent from a session that the pinned identity
  had cross-signed (its Olm keys are on the doctor's device, not on the homeserver: the
  homeserver cannot write that message). The code names the pending key
  (`texts.reset_code`), so an earlier confirmation replayed by the homeserver confirms
  nothing; or
- an operator, after checking with the doctor by another channel:
  ``caducee bot pending-resets`` then ``caducee bot accept-identity USER``.

Each step goes to the bot's audit log (command ``identity-reset``). The list of pending resets
goes to the bridge at start and at each change (`report.ResetReporter`), where the federation's
admin console shows it and the bridge's audit log records each reset appearing and ending.
"""
