"""DKIM signing (RFC 6376) with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

Messages are signed where they are composed, in the render processes, with the
`cryptography` package (OpenSSL): a pure-Python RSA signature costs tens of milliseconds,
OpenSSL's well under one. Canonicalization is relaxed/relaxed, which survives the header
folding and whitespace changes relays make. The signature covers the headers receivers
and RFC 8058 ask for (From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe,
List-Unsubscribe-Post) plus Reply-To, MIME-Version and Content-Type when present; From
is signed once more than it occurs, so no second From can be added after signing.

Several keys may sign each message (RFC 6376 allows any number of signatures, RFC 8463
suggests RSA beside Ed25519 while receivers catch up): NURTURE_DKIM_SELECTOR and
NURTURE_DKIM_KEY_FILE then list as many selectors and key files, comma-separated, in pairs.
A receiver that cannot verify one signature uses another.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from nurture.config import Settings
from nurture.errors import NurtureError

SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
)
# Signed even where absent (an empty value in the hash), so none can be added on the way.
OVERSIGNED = ("From",)

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WSP_TEXT = re.compile(r"[ \t]+")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")


class DkimError(NurtureError):
    """The DKIM settings cannot be used (no key file, an unsupported key, a bad name)."""


def canonical_body(body: bytes) -> bytes:
    """The relaxed body canonicalization: whitespace runs become one space, trailing
    whitespace and trailing empty lines go, and a non-empty body ends with one CRLF.
    Plain byte replacements rather than a regular expression or a loop over lines: this
    runs for every message, and the bytes methods run at C speed."""
    text = body.replace(b"\r\n", b"\n").replace(b"\t", b" ")
    while b"  " in text:
        text = text.replace(b"  ", b" ")
    text = text.replace(b" \n", b"\n").rstrip(b"\n")
    text = text[:-1] if text.endswith(b" ") else text
    return text.replace(b"\n", b"\r\n") + b"\r\n" if text else b""


def canonical_header(name: str, value: str) -> str:
    """The relaxed header canonicalization of one header, without its line end."""
    unfolded = _FOLD.sub("", value).replace("\r", "").replace("\n", "")
    return f"{name.strip().lower()}:{_WSP_TEXT.sub(' ', unfolded).strip()}"


@dataclass(frozen=True)
class DkimKey:
    """A private signing key and what the DNS record says about it."""

    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @classmethod
    def load(cls, path: Path) -> DkimKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DkimError(f"{path}: cannot read the DKIM key: {exc.strerror}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise DkimError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 1024:
                raise DkimError(f"{path}: RSA keys under 1024 bits are refused by receivers; use 2048")
            return cls("rsa-sha256", key)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return cls("ed25519-sha256", key)
        raise DkimError(f"{path}: DKIM keys are RSA or Ed25519, not {type(key).__name__}")

    def public_record(self) -> str:
        """The TXT record value published at `<selector>._domainkey.<domain>`."""
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def sign_bytes(self, data: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            # RFC 8463: Ed25519 (PureEdDSA) over the SHA-256 hash of the signed data.
            return self.private_key.sign(hashlib.sha256(data).digest())
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def generate_key(algorithm: str = "rsa", bits: int = 2048) -> bytes:
    """A new private key as PEM (PKCS#8), for `nurture dkim keygen`."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DkimError(f"unknown DKIM key algorithm {algorithm!r}: use 'rsa' or 'ed25519'")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for one domain and selector. Plain data, so render processes get it pickled."""

    domain: str
    selector: str
    key_pem: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for label, value in (("domain", self.domain), ("selector", self.selector)):
            if not _SELECTOR.match(value):
                raise DkimError(f"DKIM {label} {value!r} is not a DNS name")

    @classmethod
    def from_file(cls, domain: str, selector: str, key_file: Path) -> DkimSigner:
        DkimKey.load(key_file)  # fail at start-up, not at the first send
        return cls(domain, selector, key_file.read_bytes())

    @property
    def key(self) -> DkimKey:
        cached: DkimKey | None = self.__dict__.get("_key")
        if cached is None:
            key = serialization.load_pem_private_key(self.key_pem, password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                cached = DkimKey("rsa-sha256", key)
            elif isinstance(key, ed25519.Ed25519PrivateKey):
                cached = DkimKey("ed25519-sha256", key)
            else:
                raise DkimError("DKIM keys are RSA or Ed25519")
            object.__setattr__(self, "_key", cached)
        return cached

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_key"}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def signature_header(self, headers: Sequence[tuple[str, str]], body: bytes, timestamp: int | None = None) -> str:
        """The value of a DKIM-Signature header for a message with these headers (in their
        order, values as they will be sent) and this body (as sent, CRLF line ends)."""
        key = self.key
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode()
        by_name: dict[str, list[str]] = {}
        for name, value in headers:
            by_name.setdefault(name.lower(), []).append(value)
        signed: list[str] = []
        lines: list[str] = []
        for name in SIGNED_HEADERS:
            values = by_name.get(name.lower())
            if not values:
                continue
            # Several instances sign from the bottom up (RFC 6376 5.4.2).
            for value in reversed(values):
                signed.append(name)
                lines.append(canonical_header(name, value))
            if name in OVERSIGNED:
                signed.append(name)  # the missing instance hashes as nothing
        tags = [
            "v=1",
            f"a={key.algorithm}",
            "c=relaxed/relaxed",
            f"d={self.domain}",
            f"s={self.selector}",
        ]
        if timestamp is not None:
            tags.append(f"t={timestamp}")
        tags += [f"h={':'.join(signed)}", f"bh={body_hash}", "b="]
        data = "".join(line + "\r\n" for line in lines) + canonical_header("DKIM-Signature", "; ".join(tags))
        signature = base64.b64encode(key.sign_bytes(data.encode("utf-8"))).decode()
        # Folded between tags and inside b= only: unfolding turns each fold into one space,
        # which relaxed canonicalization makes of "; " anyway, and b= is left out of the hash.
        chunks = [signature[i : i + 72] for i in range(0, len(signature), 72)]
        return ";\r\n\t".join(tags[:-1]) + ";\r\n\tb=" + "\r\n\t".join(chunks)


def dns_records(domain: str, selector: str, key: DkimKey, *, return_path_domain: str | None = None) -> list[str]:
    """The DNS TXT records a sender publishes: the DKIM key, and suggestions for SPF and DMARC."""
    record = key.public_record()
    chunks = [record[i : i + 255] for i in range(0, len(record), 255)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    spf_domain = return_path_domain or domain
    return [
        f"{selector}._domainkey.{domain}. IN TXT ( {quoted} )",
        f'{spf_domain}. IN TXT "v=spf1 mx a ~all"   ; list the hosts or your ESP\'s include: that send for it',
        f'_dmarc.{domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r"'
        "   ; move to p=quarantine, then p=reject, once reports look clean",
    ]


def write_key(path: Path, algorithm: str = "rsa", bits: int = 2048) -> DkimKey:
    """Create a new private key file (readable by its owner only); an existing file is kept."""
    if path.exists():
        raise DkimError(f"{path} exists: keep the key that DNS publishes, or choose another file")
    pem = generate_key(algorithm, bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return DkimKey.load(path)


Signers = DkimSigner | tuple[DkimSigner, ...]


def signers(signer: Signers | None) -> tuple[DkimSigner, ...]:
    """The signers `signer` stands for: none, one, or several keys that each sign."""
    if signer is None:
        return ()
    return signer if isinstance(signer, tuple) else (signer,)


def signer_from_settings(settings: Settings) -> Signers | None:
    """The signer the settings describe: none, or all three of domain, selector and key file.
    Several comma-separated selectors and key files, in pairs, give one signature each."""
    given = {
        "NURTURE_DKIM_DOMAIN": settings.dkim_domain,
        "NURTURE_DKIM_SELECTOR": settings.dkim_selector,
        "NURTURE_DKIM_KEY_FILE": settings.dkim_key_file,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise DkimError(f"DKIM signing needs {', '.join(missing)} as well")
    assert settings.dkim_domain and settings.dkim_selector and settings.dkim_key_file
    selectors = [part.strip() for part in settings.dkim_selector.split(",")]
    files = [Path(part.strip()) for part in str(settings.dkim_key_file).split(",")]
    if len(selectors) != len(files):
        raise DkimError(
            f"NURTURE_DKIM_SELECTOR names {len(selectors)} selector(s) and NURTURE_DKIM_KEY_FILE "
            f"{len(files)} key file(s): give one key file per selector, in the same order"
        )
    if len(set(selectors)) != len(selectors):
        raise DkimError(f"NURTURE_DKIM_SELECTOR {settings.dkim_selector!r} repeats a selector: each key needs its own")
    found = tuple(DkimSigner.from_file(settings.dkim_domain, s, f) for s, f in zip(selectors, files, strict=True))
    return found[0] if len(found) == 1 else found
