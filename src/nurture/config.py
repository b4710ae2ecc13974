"""Settings, from environment variables (`NURTURE_*`), a `nurture.env` file, or explicit values.

Defaults give the embedded set-up: SQLite in `./nurture.db`, SMTP to localhost:1025.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nurture.consent.model import OPT_IN_COUNTRIES, RegimeSetting
from nurture.mail.footer import SenderIdentity


def default_render_processes() -> int:
    """Rendering is the sender's heaviest work: give it a process of its own where there is
    a second core to run it on."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return 1 if cores >= 2 else 0


DEFAULT_SECRET = "change-me"
SETTINGS_FILE = "nurture.env"


class Settings(BaseSettings):
    """Environment variables win over `nurture.env` in the current folder (written by `nurture init`)."""

    model_config = SettingsConfigDict(
        env_prefix="NURTURE_", extra="ignore", env_file=SETTINGS_FILE, env_file_encoding="utf-8"
    )

    database_url: str = Field(default="sqlite:///nurture.db", description="SQLAlchemy URL")
    scenarios_dir: Path = Path("scenarios")
    templates_dir: Path = Path("email_templates")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_ca_file: str | None = Field(default=None, description="CA bundle for a server with a private certificate")
    smtp_timeout: float = 30.0
    smtp_helo_name: str | None = Field(
        default=None, description="Name this host gives in EHLO/HELO; default: its fully qualified domain name"
    )
    smtp_pool_size: int = Field(
        default=16,
        ge=1,
        description="SMTP connections kept open; a relay tens of milliseconds away is latency-bound per connection",
    )
    smtp_pipelining: bool = Field(
        default=True,
        description="Send MAIL, RCPT and DATA together (RFC 2920) when the server offers PIPELINING",
    )
    smtp_pause_seconds: float = Field(
        default=30.0, ge=0, description="Pause after the server refuses us (not a recipient); doubles while it lasts"
    )
    smtp_pause_max_seconds: float = Field(default=900.0, ge=0, description="Longest pause after refusals")
    send_rate: float = Field(default=0.0, description="Messages per second across the pool; 0 = unlimited")
    render_processes: int = Field(
        default_factory=default_render_processes,
        ge=0,
        description="Processes that render emails while the sender talks SMTP (0: render in the sender); "
        "default 1 where a second CPU core is available, else 0",
    )
    max_attempts: int = 6
    retry_base_seconds: float = 60.0

    base_url: str = "http://localhost:8025"
    max_body_bytes: int = Field(
        default=1_000_000, ge=0, description="Largest request body the HTTP side reads (413 beyond it); 0: no limit"
    )
    metrics_token: str | None = Field(
        default=None, description="Bearer token that may read /metrics (else a dashboard login is needed)"
    )
    metrics_public: bool = Field(default=False, description="Serve /metrics to anyone (behind your own firewall)")
    secret_key: str = Field(default=DEFAULT_SECRET, description="Signs tracking and unsubscribe links")
    mail_domain: str = "nurture.local"
    unsubscribe_mailto: str | None = None
    notify_sender: str = "nurture <nurture@localhost>"
    tracking_address_days: int = Field(
        default=30,
        ge=0,
        description="Days the full client address of an open or click is kept; after that only its network "
        "(/24, /48 for IPv6), which still tells scanners and proxies apart; 0: never store the full address",
    )

    # Deliverability: List-Id, DKIM, per-send bounce addresses.
    list_domain: str | None = Field(default=None, description="List-Id is <scenario>.<this>; default: mail_domain")
    dkim_domain: str | None = Field(default=None, description="Sign with DKIM for this domain (d=)")
    dkim_selector: str | None = Field(default=None, description="DKIM selector (s=): <selector>._domainkey.<domain>")
    dkim_key_file: Path | None = Field(default=None, description="PEM private key (RSA or Ed25519)")
    bounce_domain: str | None = Field(
        default=None, description="Per-send return paths bounces+<send>-<mac>@<this> (VERP); unset: the From address"
    )
    bounce_local: str = "bounces"
    bounce_listen_host: str = Field(default="127.0.0.1", description="`nurture bounces serve` listens here")
    bounce_listen_port: int = 2525
    bounce_imap_host: str | None = Field(default=None, description="`nurture bounces fetch` reads this mailbox")
    bounce_imap_port: int = 993
    bounce_imap_username: str | None = None
    bounce_imap_password: str | None = None
    bounce_imap_folder: str = "INBOX"
    bounce_imap_tls: bool = Field(default=True, description="Implicit TLS (port 993); false: plain, or STARTTLS")
    bounce_imap_starttls: bool = False
    bounce_imap_processed_folder: str | None = Field(default=None, description="Move handled reports here")
    soft_bounce_limit: int = Field(default=3, ge=1, description="Soft bounces within the period that suppress")
    soft_bounce_days: int = Field(default=30, ge=1)
    reputation_window: int = Field(default=1000, ge=1, description="Judge a scenario on its last N sends")
    reputation_min_sends: int = Field(default=100, ge=1, description="Judge no scenario on fewer sends")
    max_complaint_rate: float = Field(default=0.003, ge=0, le=1, description="Pause above this (0.3%)")
    max_hard_bounce_rate: float = Field(default=0.05, ge=0, le=1, description="Pause above this (5%)")
    marketing_email: str | None = Field(default=None, description="Told when a scenario is paused")
    # ESP webhooks: each route answers 404 until its secret is set.
    ses_topic_arns: list[str] = Field(default_factory=list, description="SNS topics whose SES events count (JSON)")
    sendgrid_public_key: str | None = Field(default=None, description="SendGrid's event webhook verification key")
    mailgun_signing_key: str | None = Field(default=None, description="Mailgun's webhook signing key")
    postmark_username: str | None = Field(default=None, description="Basic-auth user in Postmark's webhook URL")
    postmark_password: str | None = None

    frequency_cap: int = 3
    frequency_period_days: int = 7

    batch_size: int = 500
    lease_seconds: int = 120
    tick_seconds: float = 5.0
    send_seconds: float = 2.0
    enrol_seconds: float = 60.0
    events_lookback_days: int = 120
    event_retention_days: int = Field(
        default=0,
        ge=0,
        description="Days of raw events kept; older whole months are rolled into daily per-lead counts and "
        "dropped by the daemon once a day (`nurture events prune`); at least the scoring lookback and "
        "events_lookback_days; 0: keep every event",
    )

    worker_id: str | None = None

    sender_name: str | None = Field(default=None, description="Who sends the emails, shown in every footer")
    sender_postal_address: str | None = Field(default=None, description="The sender's postal address, in every footer")
    sender_contact: str | None = Field(default=None, description="An address or phone number for questions (optional)")
    consent_regime: RegimeSetting = Field(
        default=RegimeSetting.AUTO,
        description="auto: opt-in for leads in the opt-in countries, opt-out elsewhere; or opt_in / opt_out for all",
    )
    consent_opt_in_countries: str = Field(
        default=",".join(sorted(OPT_IN_COUNTRIES)),
        description="Comma-separated country codes whose leads need consent before any email (regime auto)",
    )
    confirmation_sender: str | None = Field(
        default=None,
        description="From of the double opt-in email (default: the sender's name at confirm@<mail domain>)",
    )
    confirmation_valid_hours: int = Field(default=168, ge=1, description="How long a double opt-in link works")
    erasure_key: str | None = Field(
        default=None,
        description="Keys the hashes that keep erased addresses suppressed (default: the secret key); "
        "keep it: with another key an erased address could be imported and mailed again",
    )

    @property
    def frequency_period(self) -> timedelta:
        return timedelta(days=self.frequency_period_days)

    @property
    def sender_identity(self) -> SenderIdentity | None:
        if not self.sender_name or not self.sender_postal_address:
            return None
        return SenderIdentity(self.sender_name, self.sender_postal_address, self.sender_contact)

    @property
    def confirmation_from(self) -> str:
        return self.confirmation_sender or f"{self.sender_name or 'nurture'} <confirm@{self.mail_domain}>"

    @property
    def opt_in_countries(self) -> frozenset[str]:
        return frozenset(c.strip().upper() for c in self.consent_opt_in_countries.split(",") if c.strip())

    @property
    def confirmation_valid_for(self) -> timedelta:
        return timedelta(hours=self.confirmation_valid_hours)

    @property
    def suppression_hash_key(self) -> str:
        return self.erasure_key or self.secret_key

    @property
    def default_secret_on_a_public_site(self) -> bool:
        """Whether the default secret key would sign links and sessions of a site others reach:
        anyone could then forge unsubscribe links and dashboard sessions."""
        host = (urlsplit(self.base_url).hostname or "").lower()
        local = host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
        return self.secret_key == DEFAULT_SECRET and not local

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)
