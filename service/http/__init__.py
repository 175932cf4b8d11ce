"""Herald's HTTP API (Litestar): ``create_app(settings, herald)`` in :mod:`service.http.app`."""
