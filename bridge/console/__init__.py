"""The federation admins' web console: server-rendered pages served by the bridge."""
