"""Authoring aids on a scenario's page: preview an email for a lead, send oneself a test over
real SMTP, and see what `nurture validate` says (over real HTTP)."""

from __future__ import annotations

import html
import re

import httpx

from nurture.daemon import Daemon
from tests.integration.test_web import daemon, log_in, site  # noqa: F401  (fixtures)
from tests.smtp_server import SmtpServer


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_preview_renders_the_step_for_a_lead_with_the_links_the_email_would_carry(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    smtp: SmtpServer,
) -> None:
    assert site.get("/scenarios/whitepaper_nurture/preview?step=welcome&lead=ada@nordwerk.example").status_code == 303
    log_in(daemon, site)
    page = site.get("/scenarios/whitepaper_nurture")
    assert 'action="/scenarios/whitepaper_nurture/preview"' in page.text and 'id="findings"' in page.text

    shown = site.get(
        "/scenarios/whitepaper_nurture/preview", params={"step": "welcome", "lead": "ada@nordwerk.example"}
    )
    assert shown.status_code == 200
    assert '<td id="preview-subject">Your copy of our whitepaper, Ada</td>' in shown.text
    frame = re.search(r'<iframe id="preview-html"[^>]*sandbox=""[^>]*srcdoc="([^"]*)"', shown.text)
    assert frame is not None, "the email is shown in a sandboxed frame"
    body = html.unescape(frame.group(1))
    assert "Ada" in body and "100 Main Street, Boston" in body, "the lead's data and the sender's footer"
    links = re.findall(r'href="(http://nurture\.test/c/[^"]+)"', body)
    assert links, "links are rewritten to signed tracking links, as in the sent email"
    assert "http://nurture.test/h/" in body, "with the hidden link that tells scanners from people"
    assert "ada@nordwerk.example" in shown.text
    assert not smtp.messages, "a preview sends nothing"

    missing = site.get("/scenarios/whitepaper_nurture/preview", params={"step": "welcome", "lead": "nobody@x.example"})
    assert missing.status_code == 404 and "No lead" in missing.text


def test_send_me_a_test_reaches_the_logged_in_users_address_over_smtp(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    smtp: SmtpServer,
) -> None:
    log_in(daemon, site)
    form = {"step": "case_study", "lead": "ada@nordwerk.example"}
    page = site.get("/scenarios/whitepaper_nurture/preview", params=form).text
    assert site.post("/scenarios/whitepaper_nurture/test", data=form).status_code == 403, "no CSRF token, no email"
    refused = site.post("/scenarios/whitepaper_nurture/test", data={**form, "csrf": csrf(page)}, follow_redirects=True)
    assert "has no email address" in refused.text and not smtp.messages

    daemon.store.access.set_user("max", "correct horse battery", email="max@acme.example")
    log_in(daemon, site)
    page = site.get("/scenarios/whitepaper_nurture/preview", params=form).text
    assert "to max@acme.example" in page
    sent = site.post("/scenarios/whitepaper_nurture/test", data={**form, "csrf": csrf(page)}, follow_redirects=True)
    assert "test of case_study for ada@nordwerk.example sent to max@acme.example" in sent.text
    [message] = smtp.messages
    assert message["To"].addresses[0].addr_spec == "max@acme.example"
    assert str(message["Subject"]) == "[test] How Nordwerk cut scrap by 23% with Acme Analytics"
    assert "Ada" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert daemon.store.leads.by_email("max@acme.example") is None, "the tester is not made a lead"


def test_the_scenario_page_lists_validate_findings(daemon: Daemon, site: httpx.Client) -> None:  # noqa: F811
    template = daemon.settings.templates_dir / "case_study.html"
    misleading = '<p><a href="https://elsewhere.example/x">https://acme.example/report</a> '
    template.write_text(template.read_text().replace("<p>", misleading, 1), encoding="utf-8")
    log_in(daemon, site)
    page = site.get("/scenarios/whitepaper_nurture").text
    findings = re.search(r'<ul id="findings">(.*?)</ul>', page, re.S)
    assert findings is not None, "a link whose text shows another address than it goes to is worth a warning"
    assert "<strong>warning</strong>" in findings.group(1) and "case_study" in findings.group(1)
    assert (
        "link text shows &#39;https://acme.example/report&#39; but the link goes to &#39;nurture.test&#39;"
        in findings.group(1)
    )


def test_hostile_lead_names_and_search_text_are_answered_not_a_server_error(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
) -> None:
    log_in(daemon, site)
    for lead in ("²", "9" * 40, "ada\x00@nordwerk.example", "' OR 1=1 --", "%_\\"):
        shown = site.get("/scenarios/whitepaper_nurture/preview", params={"step": "welcome", "lead": lead})
        assert shown.status_code == 404 and "No lead" in shown.text, (lead, shown.status_code)
    for q in ("ada\x00", "%", "_", "\\", "' OR 1=1 --", "Ä" * 5000, "🙂"):
        for path in ("/leads", "/inbox"):
            listed = site.get(path, params={"q": q, "page": "999999", "sort": "nonsense", "stage": "x\x00"})
            assert listed.status_code == 200, (path, q, listed.status_code)
            assert "ada@nordwerk.example" not in listed.text
    found = site.get("/leads", params={"q": "ada"})
    assert found.status_code == 200 and "ada@nordwerk.example" in found.text
