"""Event webhooks of the email services teams send through: each request's signature is
verified the provider's way, then its events are read into `FeedbackEvent`s.

- Amazon SES, through SNS: the SNS message signature (SignatureVersion 1, SHA1withRSA, or
  2, SHA256withRSA) with the certificate at `SigningCertURL`, which must be an https URL
  on `sns.<region>.amazonaws.com`. A valid signature proves only that SNS sent it, so the
  topic must also be one of ours (`topic_arns`).
- SendGrid: ECDSA P-256 / SHA-256 over `timestamp + body`, from the
  `X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp` headers.
- Mailgun: HMAC-SHA256 of `timestamp + token` with the webhook signing key; a token seen
  before is a replay.
- Postmark signs nothing: the webhook URL carries HTTP basic auth (or a secret header)
  that only Postmark knows.

Every provider's requests are refused when their timestamp is older than `max_age`, and
each event carries the provider's id (`event_id`) so a redelivered one counts once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from nurture.errors import NurtureError
from nurture.feedback.events import BOUNCE_KINDS, FeedbackEvent, FeedbackKind
from nurture.mail.status import classify_reply, find_enhanced

Clock = Callable[[], datetime]


class WebhookRejected(NurtureError):
    """A webhook request that is forged, replayed, stale or unreadable; nothing of it is used."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookRejected(f"body is not JSON: {exc}", 400) from exc


def _time(value: Any) -> datetime | None:
    """ISO 8601 text or Unix seconds, as an aware UTC datetime."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _fresh(when: datetime | None, now: datetime, max_age: timedelta, what: str) -> None:
    if when is None:
        raise WebhookRejected(f"{what} has no readable timestamp", 400)
    if when < now - max_age or when > now + timedelta(minutes=5):
        raise WebhookRejected(f"{what} timestamp {when.isoformat()} is outside the accepted {max_age} window")


def _bounce(source: str, recipient: str | None, text: str, **extra: Any) -> FeedbackEvent:
    reply = classify_reply(text, code=extra.pop("code", None), enhanced=extra.pop("status", None))
    kind = extra.pop("kind", None) or BOUNCE_KINDS[reply.verdict]
    if kind is FeedbackKind.DELIVERED:
        kind = FeedbackKind.SOFT_BOUNCE
    return FeedbackEvent(
        kind, source, recipient=_str(recipient), status=reply.enhanced, code=reply.code, diagnostic=text, **extra
    )


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object from an event, or an empty one for anything else (an odd payload
    from a verified sender gives no event rather than an error)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _message_id(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return text if text.startswith("<") else f"<{text}>"


def _send_id(metadata: Any) -> int | None:
    """The send id nurture put into the provider's metadata (`nurture_send`), if any."""
    if isinstance(metadata, Mapping):
        value = metadata.get("nurture_send")
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return None


# -- Amazon SES through SNS ----------------------------------------------------------------------

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def fetch_https(url: str) -> bytes:
    """Download a signing certificate (the URL has been checked to be an SNS one)."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        data: bytes = answer.read(64 * 1024)
        return data


def check_sns_url(url: str) -> str:
    """`url` if it is an https URL on an SNS host, else a rejection: anything else could
    make the server fetch an attacker's certificate (or any URL at all)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise WebhookRejected(f"unreadable SNS URL {url!r}") from exc
    if parts.scheme != "https" or not _SNS_HOST.match(parts.hostname or "") or parts.port not in (None, 443):
        raise WebhookRejected(f"SNS URL {url!r} is not https on sns.<region>.amazonaws.com")
    return url


@dataclass
class SnsVerifier:
    """Verifies SNS messages for the given topics. Certificates are fetched once per URL."""

    topic_arns: frozenset[str]
    fetch_cert: Callable[[str], bytes] = fetch_https
    max_age: timedelta = timedelta(hours=1)
    clock: Clock = _utcnow
    _certs: dict[str, rsa.RSAPublicKey] = field(default_factory=dict, repr=False)

    def verify(self, body: bytes) -> dict[str, Any]:
        """The SNS message, or WebhookRejected."""
        message = _json(body)
        if not isinstance(message, dict) or message.get("Type") not in _SNS_FIELDS:
            raise WebhookRejected("not an SNS message", 400)
        if message.get("TopicArn") not in self.topic_arns:
            raise WebhookRejected(f"SNS topic {message.get('TopicArn')!r} is not one of ours")
        version = str(message.get("SignatureVersion", ""))
        if version not in ("1", "2"):
            raise WebhookRejected(f"SNS SignatureVersion {version!r} is not 1 or 2")
        key = self._key(check_sns_url(str(message.get("SigningCertURL", ""))))
        signed = "".join(
            f"{name}\n{message[name]}\n" for name in _SNS_FIELDS[message["Type"]] if message.get(name) is not None
        ).encode()
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            digest = hashes.SHA1() if version == "1" else hashes.SHA256()
            key.verify(signature, signed, padding.PKCS1v15(), digest)
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRejected("SNS signature does not verify") from exc
        _fresh(_time(message.get("Timestamp")), self.clock(), self.max_age, "SNS message")
        return message

    def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._certs.get(url)
        if key is None:
            try:
                public = x509.load_pem_x509_certificate(self.fetch_cert(url)).public_key()
            except (ValueError, OSError) as exc:
                raise WebhookRejected(f"cannot load the SNS signing certificate: {exc}") from exc
            if not isinstance(public, rsa.RSAPublicKey):
                raise WebhookRejected("SNS signing certificate has no RSA key")
            key = self._certs[url] = public
        return key


def ses_events(sns_message: Mapping[str, Any]) -> list[FeedbackEvent]:
    """The events of one verified SNS notification carrying an SES notification or event."""
    if sns_message.get("Type") != "Notification":
        return []
    try:
        payload = _obj(orjson.loads(str(sns_message.get("Message", ""))))
    except orjson.JSONDecodeError:
        return []
    kind = _str(payload.get("eventType")) or _str(payload.get("notificationType"))
    mail = _obj(payload.get("mail"))
    message_id = _message_id(_obj(mail.get("commonHeaders")).get("messageId"))
    tags = _obj(mail.get("tags"))
    send_id = _send_id({k: v[0] for k, v in tags.items() if isinstance(v, list) and v})
    common: dict[str, Any] = {"message_id": message_id, "send_id": send_id}
    events: list[FeedbackEvent] = []
    if kind == "Bounce":
        bounce = _obj(payload.get("bounce"))
        bounce_type = bounce.get("bounceType")
        when = _time(bounce.get("timestamp"))
        for index, recipient in enumerate(map(_obj, _list(bounce.get("bouncedRecipients")))):
            text = recipient.get("diagnosticCode") or f"{bounce_type}/{bounce.get('bounceSubType')}"
            status = find_enhanced(str(recipient.get("status") or ""))
            forced = None
            if bounce_type == "Transient" or bounce_type == "Undetermined":
                forced = FeedbackKind.SOFT_BOUNCE
            elif bounce.get("bounceSubType") in ("Suppressed", "OnAccountSuppressionList"):
                forced = FeedbackKind.HARD_BOUNCE  # SES refused to send to an address it knows bounces
            elif bounce.get("bounceSubType") in ("ContentRejected", "AttachmentRejected", "MessageTooLarge"):
                forced = FeedbackKind.POLICY_BOUNCE
            events.append(
                _bounce(
                    "ses",
                    _str(recipient.get("emailAddress")),
                    str(text),
                    status=status,
                    kind=forced,
                    occurred_at=when,
                    event_id=f"{bounce.get('feedbackId')}:{index}",
                    **common,
                )
            )
    elif kind == "Complaint":
        complaint = _obj(payload.get("complaint"))
        for index, recipient in enumerate(map(_obj, _list(complaint.get("complainedRecipients")))):
            events.append(
                FeedbackEvent(
                    FeedbackKind.COMPLAINT,
                    "ses",
                    recipient=_str(recipient.get("emailAddress")),
                    diagnostic=f"complaint: {complaint.get('complaintFeedbackType') or 'abuse'}",
                    occurred_at=_time(complaint.get("timestamp")),
                    event_id=f"{complaint.get('feedbackId')}:{index}",
                    **common,
                )
            )
    elif kind == "Delivery":
        delivery = _obj(payload.get("delivery"))
        for recipient in _list(delivery.get("recipients")):
            events.append(
                FeedbackEvent(
                    FeedbackKind.DELIVERED,
                    "ses",
                    recipient=_str(recipient),
                    diagnostic=str(delivery.get("smtpResponse") or ""),
                    occurred_at=_time(delivery.get("timestamp")),
                    event_id=f"{mail.get('messageId')}:delivery:{recipient}",
                    **common,
                )
            )
    elif kind in ("Open", "Click"):
        detail = _obj(payload.get(kind.lower()))
        for recipient in _list(mail.get("destination")) or [None]:
            events.append(
                FeedbackEvent(
                    FeedbackKind.OPEN if kind == "Open" else FeedbackKind.CLICK,
                    "ses",
                    recipient=_str(recipient),
                    occurred_at=_time(detail.get("timestamp")),
                    event_id=f"{mail.get('messageId')}:{kind}:{detail.get('timestamp')}",
                    user_agent=_str(detail.get("userAgent")),
                    url=_str(detail.get("link")),
                    **common,
                )
            )
    return events


def sns_subscribe_url(sns_message: Mapping[str, Any]) -> str | None:
    """For a verified SubscriptionConfirmation, the URL to GET to confirm it (checked)."""
    if sns_message.get("Type") != "SubscriptionConfirmation":
        return None
    return check_sns_url(str(sns_message.get("SubscribeURL", "")))


# -- SendGrid ------------------------------------------------------------------------------------


@dataclass
class SendGridVerifier:
    """SendGrid's signed event webhook; `public_key` is the base64 key from its settings page."""

    public_key: str
    max_age: timedelta = timedelta(minutes=10)
    clock: Clock = _utcnow

    def __post_init__(self) -> None:
        try:
            key = serialization.load_der_public_key(base64.b64decode(self.public_key))
        except (ValueError, binascii.Error) as exc:
            raise NurtureError(f"SendGrid verification key is not a base64 public key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise NurtureError("SendGrid verification key is not an ECDSA key")
        self._key = key

    def verify(self, body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        signature = _header(headers, "X-Twilio-Email-Event-Webhook-Signature")
        timestamp = _header(headers, "X-Twilio-Email-Event-Webhook-Timestamp")
        if not signature or not timestamp:
            raise WebhookRejected("SendGrid signature headers are missing", 401)
        try:
            self._key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRejected("SendGrid signature does not verify") from exc
        _fresh(_time(timestamp), self.clock(), self.max_age, "SendGrid request")
        events = _json(body)
        if not isinstance(events, list):
            raise WebhookRejected("SendGrid body is not a list of events", 400)
        return [e for e in events if isinstance(e, dict)]


def sendgrid_events(events: Iterable[Mapping[str, Any]]) -> list[FeedbackEvent]:
    out: list[FeedbackEvent] = []
    for event in events:
        name = _str(event.get("event"))
        common: dict[str, Any] = {
            "recipient": _str(event.get("email")),
            "message_id": _message_id(event.get("smtp-id")),
            "send_id": _send_id(event),
            "occurred_at": _time(event.get("timestamp")),
            "event_id": _str(event.get("sg_event_id")),
        }
        if name == "bounce":
            text = str(event.get("reason") or "")
            blocked = event.get("type") == "blocked"
            status = find_enhanced(str(event.get("status") or ""))
            recipient = common.pop("recipient")
            kind = FeedbackKind.POLICY_BOUNCE if blocked else None
            out.append(_bounce("sendgrid", recipient, text, status=status, kind=kind, **common))
        elif name == "deferred":
            out.append(FeedbackEvent(FeedbackKind.DELAYED, "sendgrid", diagnostic=str(event.get("response")), **common))
        elif name == "spamreport":
            out.append(FeedbackEvent(FeedbackKind.COMPLAINT, "sendgrid", diagnostic="spam report", **common))
        elif name in ("unsubscribe", "group_unsubscribe"):
            out.append(FeedbackEvent(FeedbackKind.UNSUBSCRIBE, "sendgrid", diagnostic=str(name), **common))
        elif name == "delivered":
            out.append(
                FeedbackEvent(FeedbackKind.DELIVERED, "sendgrid", diagnostic=str(event.get("response")), **common)
            )
        elif name in ("open", "click"):
            kind = FeedbackKind.OPEN if name == "open" else FeedbackKind.CLICK
            out.append(
                FeedbackEvent(
                    kind, "sendgrid", user_agent=_str(event.get("useragent")), url=_str(event.get("url")), **common
                )
            )
    return out


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


# -- Mailgun -------------------------------------------------------------------------------------


@dataclass
class MailgunVerifier:
    """Mailgun's signed webhooks; a token is accepted once (kept for `max_age`)."""

    signing_key: str
    max_age: timedelta = timedelta(minutes=15)
    clock: Clock = _utcnow
    _seen: OrderedDict[str, datetime] = field(default_factory=OrderedDict, repr=False)

    def verify(self, body: bytes) -> dict[str, Any]:
        payload = _json(body)
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise WebhookRejected("Mailgun body has no signature", 401)
        timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
        expected = hmac.new(self.signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not token or not hmac.compare_digest(expected, given.lower()):
            raise WebhookRejected("Mailgun signature does not verify")
        now = self.clock()
        _fresh(_time(timestamp), now, self.max_age, "Mailgun request")
        while self._seen and next(iter(self._seen.values())) < now - self.max_age:
            self._seen.popitem(last=False)
        if token in self._seen:
            raise WebhookRejected("Mailgun token was used before: a replayed request")
        self._seen[token] = now
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise WebhookRejected("Mailgun body has no event-data", 400)
        return data


def mailgun_events(data: Mapping[str, Any]) -> list[FeedbackEvent]:
    name = _str(data.get("event"))
    headers = _obj(_obj(data.get("message")).get("headers"))
    common: dict[str, Any] = {
        "message_id": _message_id(headers.get("message-id")),
        "send_id": _send_id(data.get("user-variables")),
        "occurred_at": _time(data.get("timestamp")),
        "event_id": _str(data.get("id")),
    }
    recipient = _str(data.get("recipient"))
    if name == "failed":
        status = _obj(data.get("delivery-status"))
        text = " ".join(str(status.get(k) or "") for k in ("code", "message", "description")).strip()
        code = status.get("code") if isinstance(status.get("code"), int) else None
        kind = None
        if data.get("severity") == "temporary":
            kind = FeedbackKind.SOFT_BOUNCE
        elif data.get("reason") == "suppress-bounce":
            kind = FeedbackKind.HARD_BOUNCE  # Mailgun refused an address it knows bounces
        return [_bounce("mailgun", recipient, text or str(data.get("reason")), code=code, kind=kind, **common)]
    simple = {
        "complained": FeedbackKind.COMPLAINT,
        "unsubscribed": FeedbackKind.UNSUBSCRIBE,
        "delivered": FeedbackKind.DELIVERED,
        "opened": FeedbackKind.OPEN,
        "clicked": FeedbackKind.CLICK,
    }
    if name not in simple:
        return []
    agent = _str(_obj(data.get("client-info")).get("user-agent"))
    return [
        FeedbackEvent(
            simple[name], "mailgun", recipient=_str(recipient), user_agent=agent, url=_str(data.get("url")), **common
        )
    ]


# -- Postmark ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostmarkVerifier:
    """Postmark sends the credentials set in its webhook URL (basic auth), or a custom
    header; either must match. Postmark signs no timestamp, so replays are caught by the
    events' ids only."""

    username: str | None = None
    password: str | None = None
    header_name: str | None = None
    header_value: str | None = None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        ok = False
        if self.username is not None and self.password is not None:
            given = _header(headers, "Authorization") or ""
            expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            ok = hmac.compare_digest(given.encode(), expected.encode())
        if not ok and self.header_name and self.header_value:
            ok = hmac.compare_digest((_header(headers, self.header_name) or "").encode(), self.header_value.encode())
        if not ok:
            raise WebhookRejected("Postmark credentials are missing or wrong", 401)
        payload = _json(body)
        if not isinstance(payload, dict):
            raise WebhookRejected("Postmark body is not an object", 400)
        return payload


_POSTMARK_HARD = {"HardBounce", "BadEmailAddress"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder", "ChallengeVerification"}
_POSTMARK_POLICY = {"Blocked", "ContentRelay", "SMTPApiError", "SpamNotification", "VirusNotification"}


def postmark_events(payload: Mapping[str, Any]) -> list[FeedbackEvent]:
    record = _str(payload.get("RecordType"))
    common: dict[str, Any] = {
        "message_id": None,
        "send_id": _send_id(payload.get("Metadata")),
    }
    if record == "Bounce":
        bounce_type = str(payload.get("Type") or "")
        text = str(payload.get("Details") or payload.get("Description") or bounce_type)
        if bounce_type == "SpamComplaint":
            kind = FeedbackKind.COMPLAINT
        elif bounce_type in _POSTMARK_HARD:
            kind = FeedbackKind.HARD_BOUNCE
        elif bounce_type in _POSTMARK_POLICY:
            kind = FeedbackKind.POLICY_BOUNCE
        elif bounce_type in _POSTMARK_SOFT:
            kind = FeedbackKind.SOFT_BOUNCE
        else:
            kind = None
        when = _time(payload.get("BouncedAt"))
        event_id = f"bounce:{payload.get('ID')}"
        return [
            _bounce(
                "postmark", _str(payload.get("Email")), text, kind=kind, occurred_at=when, event_id=event_id, **common
            )
        ]
    if record == "SpamComplaint":
        return [
            FeedbackEvent(
                FeedbackKind.COMPLAINT,
                "postmark",
                recipient=_str(payload.get("Email")),
                diagnostic=str(payload.get("Description") or "spam complaint"),
                occurred_at=_time(payload.get("BouncedAt")),
                event_id=f"complaint:{payload.get('ID')}",
                **common,
            )
        ]
    kinds = {"Delivery": FeedbackKind.DELIVERED, "Open": FeedbackKind.OPEN, "Click": FeedbackKind.CLICK}
    if record in kinds:
        when = payload.get("DeliveredAt") or payload.get("ReceivedAt")
        return [
            FeedbackEvent(
                kinds[record],
                "postmark",
                recipient=_str(payload.get("Recipient")),
                diagnostic=str(payload.get("Details") or ""),
                occurred_at=_time(when),
                event_id=f"{record}:{payload.get('MessageID')}:{when}",
                user_agent=_str(payload.get("UserAgent")),
                url=_str(payload.get("OriginalLink")),
                **common,
            )
        ]
    if record == "SubscriptionChange" and payload.get("SuppressSending"):
        reason = payload.get("SuppressionReason")
        kind = {"HardBounce": FeedbackKind.HARD_BOUNCE, "SpamComplaint": FeedbackKind.COMPLAINT}.get(
            str(reason), FeedbackKind.UNSUBSCRIBE
        )
        return [
            FeedbackEvent(
                kind,
                "postmark",
                recipient=_str(payload.get("Recipient")),
                diagnostic=f"suppressed: {reason}",
                occurred_at=_time(payload.get("ChangedAt")),
                event_id=f"subscription:{payload.get('MessageID')}:{payload.get('ChangedAt')}",
                **common,
            )
        ]
    return []
