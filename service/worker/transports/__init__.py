"""Transports: the provider protocols a channel's send goes through (SMTP, SMPP, the providers' HTTP APIs, the
outbox log)."""
