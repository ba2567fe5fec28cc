"""The bridge's HTTP API (aiohttp): app factory, authentication, error shape, routes."""
