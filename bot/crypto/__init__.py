"""Cross-signing for the bot's device and trust in other people's devices.

matrix-nio has no cross-signing, yet Element (in its "exclude insecure devices" mode) refuses
room keys to devices that their owner has not cross-signed. This package holds the pure parts
(key JSON, canonical signing, chain verification, trust-on-first-use decisions) and the small
shells that talk to the homeserver and keep the keys on disk.
"""
