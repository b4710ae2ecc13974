"""End-to-end tests share the integration fixtures (SMTP server, fake clock, daemons)."""

from tests.integration.conftest import clock, make_daemon, smtp, sqlite_url, workspace  # noqa: F401
