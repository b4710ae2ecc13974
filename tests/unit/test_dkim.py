"""DKIM signatures made by nurture verify with dkimpy, an independent verifier, against the
public key nurture prints for DNS."""

from __future__ import annotations

import email
import pickle
from email import policy
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from nurture.config import Settings
from nurture.mail.dkim import (
    DkimError,
    DkimKey,
    DkimSigner,
    canonical_body,
    dns_records,
    generate_key,
    signer_from_settings,
    write_key,
)
from nurture.mail.message import build_message
from tests.samples import SENT_AT, sample_composer, sample_emails

COVERED = {
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
}


def verify(message: bytes, signer: DkimSigner) -> bool:
    record = signer.key.public_record().encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{signer.selector}._domainkey.{signer.domain}.".encode()
        return record

    return bool(dkim.verify(message, dnsfunc=dns))


def signed_headers(message: bytes) -> set[bytes]:
    parsed = email.message_from_bytes(message, policy=policy.compat32)
    tags = dict(t.strip().split("=", 1) for t in "".join(str(parsed["DKIM-Signature"]).split()).split(";") if "=" in t)
    return {h.encode().lower() for h in tags["h"].split(":")}


def message(
    signer: DkimSigner | tuple[DkimSigner, ...],
    subject: str = "Your copy of the whitepaper",
    name: str = "Anna Schmidt",
) -> bytes:
    return build_message(
        sender="Acme Analytics <hello@acme-analytics.example>",
        to_email="anna@dataharbor.example",
        to_name=name,
        subject=subject,
        text="Hi Anna,\n\nhere  it is.   \n\n\n",
        html="<p>Hi Anna,</p><p>here it is.</p>",
        message_id="<e1-welcome@acme-analytics.example>",
        unsubscribe_url="https://go.acme-analytics.example/u/abc",
        unsubscribe_mailto="unsubscribe@acme-analytics.example",
        idempotency_key="e1-welcome",
        date=SENT_AT,
        list_id="whitepaper-nurture.acme-analytics.example",
        list_name="Whitepaper nurture",
        signer=signer,
    ).data


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signed_message_verifies_and_covers_the_headers_receivers_require(algorithm: str) -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key(algorithm))
    data = message(signer)
    assert verify(data, signer)
    assert signed_headers(data) >= COVERED
    assert f"a={algorithm}-sha256".encode() in data.replace(b"\r\n\t", b" ")


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_non_ascii_subjects_and_names_sign_and_verify(algorithm: str) -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key(algorithm))
    data = message(signer, subject="【御礼】データ活用セミナーへのご参加ありがとうございました" * 2, name="鈴木 花子")
    assert verify(data, signer)


def test_a_changed_header_or_body_fails_verification() -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key("ed25519"))
    data = message(signer)
    assert not verify(data.replace(b"Subject: Your copy", b"Subject: Your COPY"), signer)
    assert not verify(data.replace(b"here  it is", b"here it was"), signer)
    # A second From added on the way is caught: From is signed once more than it occurs.
    head, body = data.split(b"\r\n\r\n", 1)
    assert not verify(head + b"\r\nFrom: ceo@acme-analytics.example\r\n\r\n" + body, signer)


def test_relaxed_canonicalization_survives_whitespace_changes_relays_make() -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key("rsa"))
    data = message(signer)
    relayed = data.replace(b"Subject: ", b"Subject:   ").replace(b"here  it is.   ", b"here it is.")
    assert verify(relayed, signer)
    assert canonical_body(b"a  b \r\n\r\n") == b"a b\r\n"
    assert canonical_body(b"\r\n\r\n") == b""


def test_every_sample_email_composed_with_a_signer_verifies() -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key("rsa"))
    emails = sample_emails(sample_composer(signer=signer))
    assert len(emails) == 12
    for sample in emails:
        assert verify(sample.message.data, signer), sample.step_id


def test_signer_travels_to_render_processes_without_its_parsed_key() -> None:
    signer = DkimSigner("acme-analytics.example", "s2026", generate_key("ed25519"))
    assert signer.key.algorithm == "ed25519-sha256"  # parsed and cached in this process
    copy = pickle.loads(pickle.dumps(signer))
    assert copy == signer and verify(message(copy), signer)


def test_key_file_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(DkimError, match="cannot read the DKIM key"):
        DkimSigner.from_file("acme.example", "s1", tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(DkimError, match="not an unencrypted PEM private key"):
        DkimKey.load(tmp_path / "bad.pem")
    with pytest.raises(DkimError, match="not a DNS name"):
        DkimSigner("acme.example", "bad selector", generate_key("ed25519"))
    (tmp_path / "ok.pem").write_bytes(generate_key("ed25519"))
    assert DkimSigner.from_file("acme.example", "s1", tmp_path / "ok.pem").key.algorithm == "ed25519-sha256"


def test_dns_records_publish_the_public_key_and_suggest_spf_and_dmarc() -> None:
    key = DkimKey("rsa-sha256", DkimSigner("a.example", "s", generate_key("rsa")).key.private_key)
    dkim_record, spf, dmarc = dns_records("acme.example", "s2026", key, return_path_domain="bounce.acme.example")
    assert dkim_record.startswith("s2026._domainkey.acme.example. IN TXT")
    published = "".join(part for i, part in enumerate(dkim_record.split('"')) if i % 2)
    assert published == key.public_record() and len(published) > 255  # split into 255-byte strings
    assert spf.startswith('bounce.acme.example. IN TXT "v=spf1')
    assert dmarc.startswith('_dmarc.acme.example. IN TXT "v=DMARC1; p=none')


@given(st.lists(st.text(alphabet=" \tab=", max_size=12), max_size=8))
def test_body_canonicalization_matches_dkimpy(lines: list[str]) -> None:
    """Bodies as nurture builds them: CRLF line ends, the last line ended too."""
    body = "".join(line + "\r\n" for line in lines).encode()
    assert canonical_body(body) == Relaxed.canonicalize_body(body)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_keeps_an_existing_one(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "s2026.pem"
    key = write_key(path, "ed25519")
    assert path.stat().st_mode & 0o777 == 0o600
    assert DkimKey.load(path).public_record() == key.public_record()
    with pytest.raises(DkimError, match="exists"):
        write_key(path)


def test_settings_sign_with_all_three_or_not_at_all(tmp_path: Path) -> None:
    assert signer_from_settings(Settings()) is None
    with pytest.raises(DkimError, match="NURTURE_DKIM_SELECTOR, NURTURE_DKIM_KEY_FILE"):
        signer_from_settings(Settings(dkim_domain="acme.example"))
    write_key(tmp_path / "k.pem")
    signer = signer_from_settings(
        Settings(dkim_domain="acme.example", dkim_selector="s1", dkim_key_file=tmp_path / "k.pem")
    )
    assert signer is not None and signer.key.algorithm == "rsa-sha256"


def test_rsa_beside_ed25519_gives_two_signatures_that_each_verify(tmp_path: Path) -> None:
    """RFC 8463 suggests signing with RSA beside Ed25519: a receiver that verifies only RSA
    uses that signature, one that verifies Ed25519 may use either."""
    for name, algorithm in (("ed.pem", "ed25519"), ("rsa.pem", "rsa")):
        write_key(tmp_path / name, algorithm)
    both = signer_from_settings(
        Settings(
            dkim_domain="acme-analytics.example",
            dkim_selector="s2026e, s2026r",
            dkim_key_file=f"{tmp_path / 'ed.pem'},{tmp_path / 'rsa.pem'}",
        )
    )
    assert isinstance(both, tuple) and [s.selector for s in both] == ["s2026e", "s2026r"]
    data = message(both)
    records = {f"{s.selector}._domainkey.{s.domain}.".encode(): s.key.public_record().encode() for s in both}

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    parsed = email.message_from_bytes(data, policy=policy.compat32)
    tags = [
        dict(t.strip().split("=", 1) for t in "".join(v.split()).split(";")) for v in parsed.get_all("DKIM-Signature")
    ]
    assert [(t["a"], t["s"]) for t in tags] == [("ed25519-sha256", "s2026e"), ("rsa-sha256", "s2026r")]
    checker = dkim.DKIM(data)
    assert checker.verify(idx=0, dnsfunc=dns) and checker.verify(idx=1, dnsfunc=dns)
    assert tags[0]["h"] == tags[1]["h"]  # neither signs the other signature


def test_several_selectors_need_as_many_key_files(tmp_path: Path) -> None:
    write_key(tmp_path / "k.pem", "ed25519")
    with pytest.raises(DkimError, match="2 selector\\(s\\) and NURTURE_DKIM_KEY_FILE 1 key file"):
        signer_from_settings(
            Settings(dkim_domain="acme.example", dkim_selector="a,b", dkim_key_file=tmp_path / "k.pem")
        )
    with pytest.raises(DkimError, match="repeats a selector"):
        signer_from_settings(
            Settings(
                dkim_domain="acme.example",
                dkim_selector="a,a",
                dkim_key_file=f"{tmp_path / 'k.pem'},{tmp_path / 'k.pem'}",
            )
        )
