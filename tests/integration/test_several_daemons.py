"""Three daemon processes on one PostgreSQL while events arrive through the HTTP API from
several clients at once: every promotion gives exactly one alert email and one webhook, no
qualify batch fails, and every lead whose events arrived is rescored and promoted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from nurture.clock import SystemClock
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.tables import NOTIFICATIONS as N
from tests.integration.conftest import ROOT, wait_for
from tests.integration.test_qualification import Hooks, webhook  # noqa: F401  (the fixture)
from tests.smtp_server import SmtpServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
LEADS = 24
OWNERS_DOMAIN = "@acme-analytics.example"


def nurture(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nurture", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_three_daemons_promote_each_lead_once_while_events_arrive_through_the_api(
    pg_url: str,
    workspace: Path,
    smtp: SmtpServer,
    tmp_path: Path,
    webhook: str,  # noqa: F811
) -> None:
    scoring = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("webhook_url: null", f"webhook_url: {webhook}")
    (workspace / "scenarios" / "scoring.yaml").write_text(scoring)
    shutil.copy(ROOT / "scenarios" / "whitepaper_nurture.yaml", workspace / "scenarios")
    port = free_port()
    env = dict(os.environ) | {
        "NURTURE_DATABASE_URL": pg_url,
        "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
        "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
        "NURTURE_SMTP_PORT": str(smtp.port),
        "NURTURE_TICK_SECONDS": "0.3",
        "NURTURE_SEND_SECONDS": "0.3",
        "NURTURE_ENROL_SECONDS": "1",
        "NURTURE_LEASE_SECONDS": "20",
        "NURTURE_SECRET_KEY": "several-daemons",
        "NURTURE_RENDER_PROCESSES": "0",
    }
    assert nurture(env, "db", "upgrade").returncode == 0
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"
        + "".join(
            f"lead{i}@firm{i}.example,Ada{i},Lang,Firm {i},1500,Manufacturing,Head of Operations,DE,"
            "Europe/Berlin,fair\n"
            for i in range(LEADS)
        )
    )
    assert nurture(env, "leads", "import", str(csv)).returncode == 0
    key = nurture(env, "api-key", "create", "crm").stdout.strip()
    log = tmp_path / "daemons.log"
    processes = []
    with log.open("ab") as out:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "nurture", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
            )
        )
        for n in range(3):
            worker = env | {"NURTURE_WORKER_ID": f"node-{n}"}
            processes.append(
                subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=worker, stdout=out, stderr=out)
            )
    store = Store(make_engine(pg_url), SystemClock())
    try:
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            try:
                return httpx.get(f"{base}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the API to answer", serving, timeout=240)
        wait_for(
            "three daemons", lambda: all(f"daemon node-{n} running" in log.read_text() for n in range(3)), timeout=240
        )

        def post(i: int) -> int:
            now = datetime.now(UTC)
            events = [
                {
                    "id": f"w-{i}",
                    "email": f"lead{i}@firm{i}.example",
                    "type": "webinar_attended",
                    "at": (now - timedelta(hours=3)).isoformat(),
                },
                {
                    "id": f"q-{i}",
                    "email": f"lead{i}@firm{i}.example",
                    "type": "inquiry",
                    "at": (now - timedelta(hours=1)).isoformat(),
                    "props": {"url": "/contact"},
                },
            ]
            answer = httpx.post(
                f"{base}/api/v1/events/batch", json={"events": events}, headers={"Authorization": f"Bearer {key}"}
            )
            return answer.status_code

        # Events arrive from several clients at once while the daemons qualify.
        with ThreadPoolExecutor(6) as clients:
            assert set(clients.map(post, range(LEADS))) == {200}

        def all_notified() -> bool:
            with store.reading() as conn:
                rows = conn.execute(select(N.c.status, func.count()).group_by(N.c.status)).all()
            return dict(rows).get("sent", 0) == 2 * LEADS and len(Hooks.received) >= LEADS  # type: ignore[arg-type]

        wait_for(f"{LEADS} promotions to be notified by email and webhook", all_notified, timeout=240)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    text = log.read_text(errors="replace")
    assert codes[1:] == [0, 0, 0], text[-3000:]
    assert "job qualify failed" not in text and "Traceback" not in text, text[-3000:]
    hot = [store.leads.by_email(f"lead{i}@firm{i}.example") for i in range(LEADS)]
    assert all(lead is not None and lead.lifecycle_stage == "hot" for lead in hot)
    alerts = Counter(
        str(m["Subject"]).split(": ", 1)[1].split(",")[0]
        for m in smtp.messages
        if str(m["Subject"]).startswith("Hot lead:")
    )
    assert sorted(alerts.values()) == [1] * LEADS, alerts
    hooks = Counter(json.loads(body)["lead"]["email"] for _, body in Hooks.received)
    assert sorted(hooks.values()) == [1] * LEADS, hooks
