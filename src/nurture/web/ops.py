"""Operations endpoints: Prometheus `/metrics` and `/healthz`.

Metrics are read from the database at scrape time, so one scrape of any instance shows
the whole cluster: several daemons share the outbox, and each publishes its job durations
as a heartbeat row.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from nurture.daemon import HEARTBEAT
from nurture.jobs.feedback import reputation_policy
from nurture.store.reports import StoreUnavailable
from nurture.vocabulary import NotificationStatus, SendStatus
from nurture.web.context import Web, web

router = APIRouter(include_in_schema=False)
LIVE = timedelta(minutes=15)  # heartbeats older than this belong to stopped daemons


class StoreCollector(Collector):
    def __init__(self, w: Web) -> None:
        self.w = w

    def collect(self) -> Iterator[Metric]:
        now = self.w.clock.now()
        found = self.w.store.reports.counters(now, HEARTBEAT)
        sends, notes, stages, events = found.sends, found.notifications, found.stages, found.events
        due_sends, retrying, due, active = (
            found.due_sends,
            found.retrying,
            found.due_enrolments,
            found.active_enrolments,
        )
        beats = found.heartbeats

        sent = CounterMetricFamily("nurture_emails_sent", "Emails accepted by the SMTP server")
        sent.add_metric([], sends.get(SendStatus.SENT, 0))
        yield sent
        failures = CounterMetricFamily("nurture_email_failures", "Emails not delivered", labels=["reason"])
        for reason in (SendStatus.BOUNCED, SendStatus.FAILED, SendStatus.SUPPRESSED):
            failures.add_metric([reason], sends.get(reason, 0))
        yield failures
        backlog = GaugeMetricFamily("nurture_outbox_backlog", "Emails waiting in the outbox", labels=["state"])
        backlog.add_metric(["pending"], sends.get(SendStatus.PENDING, 0))
        backlog.add_metric(["sending"], sends.get(SendStatus.SENDING, 0))
        backlog.add_metric(["due"], due_sends or 0)
        backlog.add_metric(["retrying"], retrying or 0)
        yield backlog
        notify = GaugeMetricFamily("nurture_notifications", "Messages to sales by state", labels=["state"])
        for state in NotificationStatus:
            notify.add_metric([state], notes.get(state, 0))
        yield notify
        enrol = GaugeMetricFamily("nurture_enrolments_active", "Active enrolments", labels=["due"])
        enrol.add_metric(["now"], due or 0)
        enrol.add_metric(["all"], active or 0)
        yield enrol
        parked = GaugeMetricFamily(
            "nurture_enrolments_parked", "Enrolments parked because their step raised (nurture leads resume)"
        )
        parked.add_metric([], self.w.store.enrolments.parked(limit=0)[0])
        yield parked
        leads = GaugeMetricFamily("nurture_leads", "Leads by lifecycle stage", labels=["stage"])
        for stage, n in sorted(stages.items()):
            leads.add_metric([stage], n)
        yield leads
        received = CounterMetricFamily("nurture_events", "Events received", labels=["type"])
        for type_, n in sorted(events.items()):
            received.add_metric([type_], n)
        yield received
        yield from _heartbeats(beats, now)
        yield from _reputation(self.w)


def _reputation(w: Web) -> Iterator[Metric]:
    """Each scenario's and each recipient domain's outcome rates over the last sends, paused
    scenarios, and the reports received by source and kind."""
    policy = reputation_policy(w.settings)
    rates = GaugeMetricFamily(
        "nurture_reputation_rate",
        f"Outcome rates of a scenario's last {policy.window} sends",
        labels=["scenario", "outcome"],
    )
    for scenario, outcomes in sorted(w.store.feedback.outcomes_by("scenario", policy.window).items()):
        for outcome, rate in outcomes.rates.items():
            rates.add_metric([scenario, outcome], rate)
    yield rates
    domains = GaugeMetricFamily(
        "nurture_domain_reputation_rate",
        f"Outcome rates per recipient domain over the last {policy.window} sends",
        labels=["domain", "outcome"],
    )
    by_domain = w.store.feedback.outcomes_by("domain", policy.window)
    for domain, outcomes in sorted(by_domain.items(), key=lambda item: -item[1].sends)[:50]:
        for outcome, rate in outcomes.rates.items():
            domains.add_metric([domain, outcome], rate)
    yield domains
    paused = GaugeMetricFamily(
        "nurture_scenario_paused", "1 while the reputation guard holds a scenario", labels=["scenario"]
    )
    for scenario in sorted(w.store.feedback.paused()):
        paused.add_metric([scenario], 1)
    yield paused
    received = CounterMetricFamily(
        "nurture_feedback", "Delivery reports and ESP events received", labels=["source", "kind"]
    )
    for (source, kind), n in sorted(w.store.feedback.counts().items()):
        received.add_metric([source, kind], n)
    yield received


def _heartbeats(beats: Sequence[tuple[str, str]], now: datetime) -> Iterator[Metric]:
    seconds = GaugeMetricFamily(
        "nurture_job_duration_seconds", "How long each daemon's last run of each job took", labels=["worker", "job"]
    )
    seen = GaugeMetricFamily(
        "nurture_daemon_last_seen_seconds", "Seconds since a daemon's heartbeat", labels=["worker"]
    )
    paused = GaugeMetricFamily(
        "nurture_sending_paused_seconds",
        "Seconds left of a daemon's pause of sending after the SMTP server refused it (0: sending)",
        labels=["worker"],
    )
    for key, value in beats:
        try:
            beat = json.loads(value)
            at = datetime.fromisoformat(beat["at"])
        except (ValueError, KeyError, TypeError):
            continue
        if now - at > LIVE:
            continue
        worker = key.removeprefix(HEARTBEAT)
        seen.add_metric([worker], (now - at).total_seconds())
        for job, took in sorted(beat.get("jobs", {}).items()):
            seconds.add_metric([worker, job], float(took))
        paused.add_metric([worker], float((beat.get("paused") or {}).get("seconds", 0.0)))
    yield seconds
    yield seen
    yield paused


def may_read_metrics(request: Request) -> bool:
    """With `metrics_public`, anyone; else the bearer of `metrics_token`, or a logged-in user."""
    settings = web(request).settings
    if settings.metrics_public:
        return True
    token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
    if settings.metrics_token and token and hmac.compare_digest(token, settings.metrics_token):
        return True
    name = request.session.get("user")
    return isinstance(name, str) and request.session.get("epoch") == web(request).store.access.session_epoch(name)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    if not may_read_metrics(request):
        return Response(
            "metrics need NURTURE_METRICS_TOKEN as a bearer token, or a dashboard login\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(web(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
def health(request: Request) -> JSONResponse:
    """200 when the database answers, else 503: for load balancers and orchestrators."""
    try:
        web(request).store.reports.ping()
    except StoreUnavailable as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})
