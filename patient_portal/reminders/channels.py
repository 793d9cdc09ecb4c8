"""How a reminder reaches the participant: Web Push (VAPID, RFC 8291/8292), e-mail (SMTP) and
the in-app banner.

A channel gets a composed `Message` (neutral text: when and where) and answers an `Outcome`;
it never touches the database. Keys the configuration leaves empty are generated once into
`instance/`: the VAPID key pair and the key that encrypts e-mail addresses at rest.

A push endpoint is a URL the participant's browser hands us, so the server only ever posts to a
known push service (`PushPolicy`): https, a host of `PORTAL_PUSH_HOSTS`, and an address on the
public internet, checked on the address the socket actually connects to, with no redirect.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

VAPID_FILE = "vapid_private_key.pem"
CONTACT_KEY_FILE = "contact_key"
# Push services keep a message at most this long when the phone is off; ours expire sooner.
MAX_PUSH_TTL = 24 * 3600
# Statuses a push service uses for "try again later".
PUSH_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Message:
    """What a reminder says, already in the participant's language."""

    title: str
    body: str
    url: str  # a path on the portal, opened when the notification is tapped
    tag: str  # one notification per subject on the phone: a newer one replaces the older
    subject_line: str  # e-mail subject
    text: str  # e-mail text part
    html: str  # e-mail HTML part
    language: str
    ttl: int  # seconds a push service may keep it
    reminder_id: int
    catalogue: str = ""  # whose words: fr_CA, fr_FR or en (i18n.text_locale); "" = language


@dataclass
class Target:
    """Where to send: the phones' subscriptions, or the decrypted address."""

    subscriptions: list = field(default_factory=list)  # PushSubscription rows
    email: str | None = None


@dataclass
class Outcome:
    """sent, retry (transient failure), failed (permanent) or gone (no subscription left)."""

    status: str
    detail: str | None = None
    gone_subscription_ids: list[int] = field(default_factory=list)
    reached_subscription_ids: list[int] = field(default_factory=list)


# --- Keys -----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _instance_file(app: Flask, name: str, make: Callable[[], bytes]) -> bytes:
    path = Path(app.instance_path) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        path.chmod(0o600)
    return path.read_bytes()


def vapid_key(app: Flask) -> ec.EllipticCurvePrivateKey:
    """The VAPID private key: PORTAL_VAPID_PRIVATE_KEY (PEM or base64url), else instance/."""
    cached = app.extensions.get("reminders_vapid_key")
    if cached is not None:
        return cached
    configured = app.config.get("PORTAL_VAPID_PRIVATE_KEY", "").strip()
    if configured and "BEGIN" not in configured:
        key = Vapid02.from_string(configured).private_key
    else:
        pem = configured.encode() or _instance_file(
            app,
            VAPID_FILE,
            lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        key = serialization.load_pem_private_key(pem, password=None)
    app.extensions["reminders_vapid_key"] = key
    return key


def vapid_public_key(app: Flask) -> str:
    """The application server key the browser subscribes with (uncompressed point, base64url)."""
    point = (
        vapid_key(app)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return _b64url(point)


def contact_cipher(app: Flask) -> MultiFernet:
    """Encrypts contact details at rest: PORTAL_CONTACT_KEY, else a key kept in instance/.

    The setting may list several keys separated by spaces: the first encrypts, all decrypt,
    which is how a key is rotated (docs/deployment.md, `flask reminders rotate-contact-key`).
    """
    cached = app.extensions.get("reminders_contact_cipher")
    if cached is not None:
        return cached
    keys = app.config.get("PORTAL_CONTACT_KEY", "").split() or [
        _instance_file(app, CONTACT_KEY_FILE, Fernet.generate_key).strip().decode()
    ]
    cipher = MultiFernet([Fernet(key.encode()) for key in keys])
    app.extensions["reminders_contact_cipher"] = cipher
    return cipher


def encrypt_contact(app: Flask, value: str) -> bytes:
    return contact_cipher(app).encrypt(value.encode())


def decrypt_contact(app: Flask, token: bytes | None) -> str | None:
    """The clear address, or None when there is none or the key changed (logged by the caller)."""
    if not token:
        return None
    try:
        return contact_cipher(app).decrypt(bytes(token)).decode()
    except InvalidToken:
        return None


# --- Where a push may go --------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class PushEndpointRefused(Exception):
    """An endpoint the portal will not contact; the reason is for the log, never the participant.

    Not an OSError on purpose: urllib3 and requests would turn one into a "could not connect"
    worth retrying, and a refusal is final."""


def forbidden_address(address: IPAddress) -> bool:
    """True for anything but a public unicast address: loopback, private, shared (CGNAT),
    link-local, site-local, multicast, reserved, unspecified, documentation; an IPv6 address
    that carries an IPv4 one (mapped, 6to4, NAT64) is judged by the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64:
            return forbidden_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return forbidden_address(embedded)
        if address.is_site_local:
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _host_matches(host: str, allowed: str) -> bool:
    """`*.example.org` is any subdomain; `example.org` is that host or a subdomain."""
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed or host.endswith("." + allowed)


@dataclass(frozen=True)
class PushPolicy:
    """The push services the server may post to (PORTAL_PUSH_HOSTS) and, outside production,
    the local test receivers (PORTAL_PUSH_TEST_RECEIVERS, loopback host and port)."""

    hosts: tuple[str, ...]
    test_receivers: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def of(cls, app: Flask) -> PushPolicy:
        production = app.config.get("PORTAL_ENV") == "production"
        receivers = () if production else app.config.get("PORTAL_PUSH_TEST_RECEIVERS", ())
        return cls(
            tuple(app.config.get("PORTAL_PUSH_HOSTS", ())),
            frozenset((host, int(port)) for host, port in receivers),
        )

    def _test_receiver(self, host: str, port: int | None) -> bool:
        return (host, port) in self.test_receivers

    def check_host(self, scheme: str, host: str, port: int | None) -> None:
        """Refuse anything but https to an allowed push service on its usual port (or a test
        receiver); an address written as digits is judged at once."""
        host = host.lower().strip("[]").rstrip(".")
        if self._test_receiver(host, port):
            return
        if scheme != "https":
            raise PushEndpointRefused("not https")
        if port not in (None, 443):
            raise PushEndpointRefused(f"port {port}")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and forbidden_address(literal):
            raise PushEndpointRefused("address not on the public internet")
        if literal is not None or not any(_host_matches(host, a) for a in self.hosts):
            raise PushEndpointRefused("not an allowed push service")

    def check_url(self, url: str) -> None:
        """The endpoint as the participant's browser gave it."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise PushEndpointRefused("malformed URL") from None
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise PushEndpointRefused("malformed URL")
        self.check_host(parts.scheme, parts.hostname, port)

    def connect(
        self,
        connection: HTTPConnection,
        scheme: str,
    ) -> socket.socket:
        """Resolve once, refuse if any address is not public, connect to one of exactly those
        addresses and check the peer again: no second lookup, so no DNS-rebinding window."""
        host, port = connection.host, connection.port
        self.check_host(scheme, host, port)
        receiver = self._test_receiver(host.lower().strip("[]"), port)
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise NameResolutionError(host, connection, error) from error
        for *_, sockaddr in found:
            address = ipaddress.ip_address(sockaddr[0])
            if forbidden_address(address) and not (receiver and address.is_loopback):
                raise PushEndpointRefused(f"{host} resolves to an address not on the internet")
        last: OSError | None = None
        for family, kind, protocol, _name, sockaddr in found:
            sock = socket.socket(family, kind, protocol)
            try:
                for level, option, value in connection.socket_options or ():
                    sock.setsockopt(level, option, value)
                if isinstance(connection.timeout, int | float):
                    sock.settimeout(connection.timeout)
                sock.connect(sockaddr)
                peer = ipaddress.ip_address(sock.getpeername()[0])
                if forbidden_address(peer) and not (receiver and peer.is_loopback):
                    raise PushEndpointRefused(f"{host} connected to an address not on the internet")
                return sock
            except TimeoutError as error:
                sock.close()
                raise ConnectTimeoutError(connection, f"Connection to {host} timed out") from error
            except OSError as error:
                sock.close()
                last = error
            except PushEndpointRefused:
                sock.close()
                raise
        raise NewConnectionError(connection, f"Failed to establish a new connection: {last}")


class _GuardedHTTPConnection(HTTPConnection):
    policy: PushPolicy  # set on the subclass each session makes

    def _new_conn(self) -> socket.socket:
        return self.policy.connect(self, "http")


class _GuardedHTTPSConnection(HTTPSConnection):
    # TLS is then set up on this socket by urllib3, for the host name: SNI and certificate.
    policy: PushPolicy

    def _new_conn(self) -> socket.socket:
        return self.policy.connect(self, "https")


class _GuardedAdapter(HTTPAdapter):
    """Every connection of the push session goes through the policy's `connect`."""

    def __init__(self, policy: PushPolicy):
        self.policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attributes = {"policy": self.policy}
        http = type("GuardedHTTPConnection", (_GuardedHTTPConnection,), attributes)
        https = type("GuardedHTTPSConnection", (_GuardedHTTPSConnection,), attributes)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any):
        self.policy.check_url(request.url or "")
        return super().send(request, *args, **kwargs)


class PushSession(requests.Session):
    """requests, for push only: guarded connections, no redirect followed (a push service
    never redirects, and a redirect could point anywhere), no proxy or .netrc from the
    environment."""

    def __init__(self, policy: PushPolicy):
        super().__init__()
        self.trust_env = False
        adapter = _GuardedAdapter(policy)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)


# --- Channels -------------------------------------------------------------------------------


class Channel:
    name = ""

    def send(self, message: Message, target: Target) -> Outcome:
        raise NotImplementedError


class PushChannel(Channel):
    """Web Push with VAPID; the payload is encrypted for each subscription (aes128gcm)."""

    name = "push"

    def __init__(self, app: Flask):
        self.vapid = Vapid02(vapid_key(app))
        self.subject = app.config["PORTAL_VAPID_SUBJECT"]
        self.timeout = app.config["PORTAL_PUSH_TIMEOUT"]
        self.http = PushSession(PushPolicy.of(app))

    def send(self, message: Message, target: Target) -> Outcome:
        if not target.subscriptions:
            return Outcome("gone", "no push subscription")
        payload = json.dumps(
            {
                "title": message.title,
                "body": message.body,
                "url": message.url,
                "tag": message.tag,
                "lang": message.language,
            },
            ensure_ascii=False,
        )
        reached, gone, errors, transient = [], [], [], False
        for subscription in target.subscriptions:
            try:
                webpush(
                    {
                        "endpoint": subscription.endpoint,
                        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                    },
                    data=payload,
                    vapid_private_key=self.vapid,
                    vapid_claims={"sub": self.subject},
                    ttl=max(1, min(message.ttl, MAX_PUSH_TTL)),
                    timeout=self.timeout,
                    requests_session=self.http,
                    headers={"Urgency": "normal", "Topic": message.tag[:32]},
                )
                reached.append(subscription.id)
            except WebPushException as error:
                status = error.status_code
                if status in (404, 410):
                    gone.append(subscription.id)
                    errors.append(f"push service answered {status}: subscription removed")
                else:
                    transient = transient or status is None or status in PUSH_RETRY_STATUSES
                    errors.append(f"push service answered {status or error.message[:80]}")
            except PushEndpointRefused as error:
                errors.append(f"push endpoint refused: {error}")
            except (requests.RequestException, OSError) as error:
                transient = True
                errors.append(f"push service unreachable ({type(error).__name__})")
        detail = "; ".join(errors) or None
        if reached:
            return Outcome("sent", detail, gone, reached)
        if transient:
            return Outcome("retry", detail, gone)
        if len(gone) == len(target.subscriptions):
            return Outcome("gone", detail, gone)
        return Outcome("failed", detail, gone)


class EmailChannel(Channel):
    """Plain text and HTML, in the participant's language, over SMTP as configured."""

    name = "email"

    def __init__(self, app: Flask):
        config = app.config
        self.host = config["PORTAL_SMTP_HOST"]
        self.port = config["PORTAL_SMTP_PORT"]
        self.security = config["PORTAL_SMTP_SECURITY"]
        self.username = config["PORTAL_SMTP_USERNAME"]
        self.password = config["PORTAL_SMTP_PASSWORD"]
        self.timeout = config["PORTAL_SMTP_TIMEOUT"]
        self.sender = config["PORTAL_MAIL_FROM"]

    def _connect(self) -> smtplib.SMTP:
        server: smtplib.SMTP
        if self.security == "ssl":
            server = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                server.starttls(context=ssl.create_default_context())
        if self.username:
            server.login(self.username, self.password)
        return server

    def send(self, message: Message, target: Target) -> Outcome:
        if not self.host:
            return Outcome("failed", "no SMTP server configured")
        if not target.email:
            return Outcome("failed", "no e-mail address")
        mail = EmailMessage()
        mail["Subject"] = message.subject_line
        mail["From"] = self.sender
        mail["To"] = target.email
        mail["Message-ID"] = make_msgid(domain="care-ssc-portal")
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        # After the parts exist: set_content moves Content-* headers into the text part.
        mail["Content-Language"] = message.language
        try:
            with self._connect() as server:
                server.send_message(mail)
        except smtplib.SMTPRecipientsRefused as error:
            codes = sorted({code for code, _text in error.recipients.values()})
            return Outcome("failed", f"SMTP refused the recipient ({codes})")
        except smtplib.SMTPResponseException as error:
            # 4xx is "try later", 5xx is final.
            status = "retry" if 400 <= error.smtp_code < 500 else "failed"
            return Outcome(status, f"SMTP answered {error.smtp_code}")
        except (smtplib.SMTPException, OSError) as error:
            return Outcome("retry", f"SMTP server unreachable ({type(error).__name__})")
        return Outcome("sent")


class InAppChannel(Channel):
    """The home-page banner: a sent in-app reminder is shown there until its moment passes."""

    name = "inapp"

    def send(self, message: Message, target: Target) -> Outcome:
        return Outcome("sent")


def build_channels(app: Flask) -> dict[str, Channel]:
    """The real channels, configured from the app."""
    return {"push": PushChannel(app), "email": EmailChannel(app), "inapp": InAppChannel()}
