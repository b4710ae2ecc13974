"""`nurture serve` as an operator runs it: keys and users from the CLI, the API over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_cli_scenarios import ROOT, nurture
from tests.smtp_server import free_port


def test_serve_with_a_key_from_the_cli_and_revoke_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    nurture("db", "upgrade", "--db", db)
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name\nada@nordwerk.example,Ada\n")
    nurture("leads", "import", str(leads), "--db", db)
    created = nurture("api-key", "create", "website", "--db", db)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("nk_") and len(key) > 40
    assert nurture("api-key", "create", "website", "--db", db).returncode == 1  # names are unique

    port = free_port()
    env = {**os.environ, "NURTURE_SECRET_KEY": "e2e-secret"}
    server = subprocess.Popen(
        [sys.executable, "-m", "nurture", "serve", "--port", str(port), "--db", db],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "nurture serve did not come up"
            time.sleep(0.2)
        event = {"id": "e-1", "email": "ada@nordwerk.example", "type": "download", "props": {"asset": "guide"}}
        stored = httpx.post(f"{base}/api/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
        assert stored.status_code == 200 and stored.json() == {"stored": 1, "duplicates": 0}

        assert nurture("api-key", "revoke", "website", "--db", db).returncode == 0
        refused = httpx.post(f"{base}/api/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=20)
    listed = nurture("api-key", "list", "--db", db).stdout
    assert "website" in listed and "revoked" in listed and key not in listed

    users = subprocess.run(
        [sys.executable, "-m", "nurture", "users", "set", "max", "--db", db],
        env={**os.environ, "NURTURE_USER_PASSWORD": "short"},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert users.returncode == 1 and "at least 8 characters" in users.stderr


def test_run_with_serve_answers_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    nurture("db", "upgrade", "--db", db)
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nurture", "run", "--serve", "--port", str(port), "--db", db],
        cwd=ROOT,
        env={**os.environ, "NURTURE_METRICS_TOKEN": "scrape-me"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer scrape-me"})
                if "nurture_job_duration_seconds{" in metrics.text:  # the daemon's heartbeat is in
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and daemon.poll() is None, "nurture run --serve did not come up"
            time.sleep(0.2)
        assert 'job="advance"' in metrics.text
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, out[-2000:]
    assert "stopped: 0 enrolled" in out
