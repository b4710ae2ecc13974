"""A run that names its PostgreSQL server fails when that server does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.integration.conftest import ROOT


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_postgres_tests_fail_instead_of_skipping_when_the_named_server_is_unreachable() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere"
    env = {**os.environ, "NURTURE_TEST_PG_URL": url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_cluster_lock.py::test_only_one_holder_of_a_cluster_lock_at_a_time",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "NURTURE_TEST_PG_URL is set, so the PostgreSQL tests must run" in result.stdout
