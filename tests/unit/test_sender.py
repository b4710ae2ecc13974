"""SMTP error classes, the rate limit, and the MIME bytes."""

from __future__ import annotations

import asyncio
import base64
import email
import hashlib
import hmac
import json
from email.policy import default
from pathlib import Path
from urllib.parse import unquote

import aiosmtplib

from nurture.mail.message import MessageError, build_message, parse_address
from nurture.mail.sender import BOUNCE, FAIL, RETRY, RateLimiter, classify
from nurture.mail.tracking import Links, sign, verify
from nurture.scenario.templates import TemplateStore


def test_errors_are_sorted_into_retry_bounce_fail_and_pause() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no user", "a@x.example")])
    greylisted = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(451, "later", "a@x.example")])
    assert classify(refused).action == BOUNCE
    assert classify(greylisted).action == RETRY
    assert classify(aiosmtplib.SMTPDataError(554, "rejected")).action == FAIL  # the content, not the mailbox
    assert classify(aiosmtplib.SMTPServerDisconnected("gone")).action == RETRY
    assert classify(aiosmtplib.SMTPSenderRefused(550, "bad sender", "us@x.example")).action == FAIL
    closing = classify(aiosmtplib.SMTPDataError(421, "closing"))
    assert closing.action == RETRY and closing.pause
    blocked = classify(aiosmtplib.SMTPConnectResponseError(554, "5.7.1 client host blocked"))
    assert blocked.action == RETRY and blocked.pause and blocked.text == "GREETING: 554 5.7.1 client host blocked"
    assert classify(ConnectionRefusedError()).action == RETRY


def test_rate_limit_spaces_sends_by_the_rate() -> None:
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    async def run() -> None:
        limiter = RateLimiter(5, burst=1, timer=lambda: clock[0], sleep=sleep)
        for _ in range(6):
            await limiter.acquire()

    asyncio.run(run())
    assert round(clock[0], 6) == 1.0  # 1 immediately, then 5 more at 5 per second


def test_message_bytes_parse_back_with_both_parts_and_encoded_headers() -> None:
    built = build_message(
        sender="Acme アナリティクス <seminar@acme.example>",
        to_email="hanako@tokai.example",
        to_name="鈴木 花子",
        subject="【御礼】ご参加ありがとうございました " * 3,
        text="本文です\nLine two",
        html="<p>本文です</p>",
        message_id="<k1@mail.example>",
        unsubscribe_url="https://t.example/u/abc",
        unsubscribe_mailto="unsub@acme.example",
        idempotency_key="k1",
    )
    assert all(len(line) <= 998 for line in built.data.split(b"\r\n"))
    assert built.data.isascii()
    message = email.message_from_bytes(built.data, policy=default)
    assert message["Subject"] == ("【御礼】ご参加ありがとうございました " * 3).strip()
    assert message["To"].addresses[0].display_name == "鈴木 花子"
    assert message["List-Unsubscribe"] == "<https://t.example/u/abc>, <mailto:unsub@acme.example?subject=unsubscribe>"
    text = message.get_body(("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == "本文です\nLine two"  # CRLF on the wire
    html = message.get_body(("html",))
    assert html is not None and html.get_content() == "<p>本文です</p>"


def test_addresses_with_line_breaks_or_junk_are_refused() -> None:
    for bad in ("a@x.example\r\nBcc: b@y.example", "not an address", "a@"):
        try:
            parse_address(bad)
        except MessageError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_signed_links_reject_tampering() -> None:
    token = sign("secret", {"l": 1, "s": 2})
    assert verify("secret", token) == {"l": 1, "s": 2}
    assert verify("other", token) is None
    _body, mac = token.split(".")
    forged = sign("secret", {"l": 99, "s": 2}).split(".")[0] + "." + mac
    assert verify("secret", forged) is None
    assert verify("secret", "garbage") is None


def test_links_in_emails_sent_by_earlier_releases_still_verify() -> None:
    """Earlier releases wrote the token's JSON with escaped non-ASCII; such links are in
    inboxes and must keep working."""
    payload = {"l": 1, "n": "ガイド", "s": 2, "u": "https://x.example/é"}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    assert "\\u" in body  # the escaped form
    mac = hmac.new(b"secret", body.encode(), hashlib.sha256).digest()[:16]
    token = f"{_b64(body.encode())}.{_b64(mac)}"
    assert verify("secret", token) == payload
    assert verify("other", token) is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_an_edited_template_is_used_from_the_next_batch_on(tmp_path: Path) -> None:
    (tmp_path / "hello.html").write_text("<p>Hello {{ lead.first_name }}</p>")
    store = TemplateStore(tmp_path)
    context = {"lead": {"first_name": "Ann"}}
    assert store.render("hello", "Hi", context).html == "<p>Hello Ann</p>"
    (tmp_path / "hello.html").write_text("<p>Welcome {{ lead.first_name }}</p>")
    (tmp_path / "hello.txt").write_text("Welcome, {{ lead.first_name }}")
    assert store.render("hello", "Hi", context).html == "<p>Hello Ann</p>"  # within one batch: as it began
    store.refresh()
    rendered = store.render("hello", "Hi {{ lead.first_name }}", context)
    assert (rendered.html, rendered.text, rendered.subject) == ("<p>Welcome Ann</p>", "Welcome, Ann", "Hi Ann")


def test_each_distinct_link_of_an_email_is_signed_once_and_verifies() -> None:
    links = Links("https://t.example/", "secret", send_id=7, lead_id=3)
    first = links.click("guide", "https://acme.example/guide?a=1&b=2")
    assert links.click("guide", "https://acme.example/guide?a=1&b=2") == first
    token = unquote(first.removeprefix("https://t.example/c/"))
    assert verify("secret", token) == {"l": 3, "s": 7, "n": "guide", "u": "https://acme.example/guide?a=1&b=2"}
    assert links.unsubscribe().startswith("https://t.example/u/")
    assert verify("secret", links.open_pixel().removeprefix("https://t.example/o/").removesuffix(".gif")) == {
        "l": 3,
        "s": 7,
    }
