"""Per-send return paths map a bounce back to its send, and forged ones are ignored."""

from __future__ import annotations

import pytest

from nurture.errors import NurtureError
from nurture.mail.message import build_message
from nurture.mail.verp import ReturnPath

PATHS = ReturnPath("bounce.acme.example", "secret")


def test_return_path_names_its_send_and_checks_out() -> None:
    address = PATHS.address(4711)
    assert address.startswith("bounces+4711-") and address.endswith("@bounce.acme.example")
    assert PATHS.send_id(address) == 4711
    assert PATHS.send_id(f"<{address.upper()}>") == 4711  # servers may change case, add brackets


@pytest.mark.parametrize(
    "forged",
    [
        PATHS.address(4711).replace("4711", "4712"),  # someone else's send with this MAC
        ReturnPath("bounce.acme.example", "other-secret").address(4711),
        PATHS.address(4711).replace("bounce.acme.example", "evil.example"),
        PATHS.address(4711).replace("bounces+", "other+"),
        "bounces@bounce.acme.example",
        "bounces+4711@bounce.acme.example",
        "bounces+x-abc@bounce.acme.example",
        "",
    ],
)
def test_forged_or_altered_return_paths_are_not_ours(forged: str) -> None:
    assert PATHS.send_id(forged) is None


def test_message_goes_out_with_the_return_path_as_envelope_sender() -> None:
    built = build_message(
        sender="Acme <hello@acme.example>",
        to_email="anna@dataharbor.example",
        to_name=None,
        subject="Hi",
        text="hi",
        html="<p>hi</p>",
        message_id="<e1@acme.example>",
        unsubscribe_url="https://go.acme.example/u/x",
        unsubscribe_mailto=None,
        idempotency_key="e1",
        return_path=PATHS.address(1),
    )
    assert built.envelope_from == PATHS.address(1)
    assert b"From: Acme <hello@acme.example>" in built.data


def test_unusable_bounce_settings_are_refused() -> None:
    with pytest.raises(NurtureError, match="bounce domain"):
        ReturnPath("not a domain", "s")
    with pytest.raises(NurtureError, match="local part"):
        ReturnPath("bounce.acme.example", "s", local="a+b")
