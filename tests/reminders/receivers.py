"""Real receivers for the dispatcher's messages: a local Web Push endpoint that checks the VAPID
signature (RFC 8292) and decrypts the payload (RFC 8291), and a local SMTP server."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from aiosmtpd.controller import Controller
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# One way to find a free port for every test server.
from tests.e2e.conftest import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """What a browser keeps for one push subscription: its key pair and auth secret."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def subscription(self, endpoint: str) -> dict:
        return {"endpoint": endpoint, "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}


@dataclass
class Delivery:
    path: str
    headers: dict
    claims: dict
    vapid_key: str
    payload: dict


def verify_vapid(authorization: str, audience: str) -> tuple[dict, str]:
    """Check `vapid t=<JWT>, k=<key>`: an ES256 signature by k, for this push service, not
    expired. Returns the claims and k; raises AssertionError or InvalidSignature."""
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", authorization
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    token, key = parts["t"], parts["k"]
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64url(header_b64))
    assert header == {"typ": "JWT", "alg": "ES256"}, header
    signature = unb64url(signature_b64)
    assert len(signature) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(unb64url(claims_b64))
    assert claims["aud"] == audience, claims
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
    assert claims["sub"].startswith(("mailto:", "https://")), claims
    return claims, key


class PushService:
    """A push service on 127.0.0.1: /push/<name> accepts (201) after checking everything;
    /gone/<name> answers 410 and /busy/<name> 503, as real services do; /redirect/<name>
    answers 307 to /push/<name>, which the portal must not follow.

    The portal posts to it only once `allowed_in(app)` names it a test receiver."""

    def __init__(self, browser: Browser):
        self.browser = browser
        self.deliveries: list[Delivery] = []
        self.refused: list[str] = []
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/gone/"):
                    self.send_response(410)
                    self.end_headers()
                    return
                if self.path.startswith("/busy/"):
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.startswith("/redirect/"):
                    self.send_response(307)
                    self.send_header("Location", "/push/" + self.path.split("/", 2)[2])
                    self.end_headers()
                    return
                try:
                    claims, key = verify_vapid(self.headers["Authorization"], service.origin)
                    assert self.headers["Content-Encoding"] == "aes128gcm"
                    assert int(self.headers["TTL"]) > 0
                    clear = http_ece.decrypt(
                        body,
                        private_key=service.browser.private_key,
                        auth_secret=service.browser.auth,
                        version="aes128gcm",
                    )
                    payload = json.loads(clear)
                except (AssertionError, InvalidSignature, KeyError, ValueError) as error:
                    service.refused.append(repr(error))
                    self.send_response(400)
                    self.end_headers()
                    return
                service.deliveries.append(
                    Delivery(self.path, dict(self.headers), claims, key, payload)
                )
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def allowed_in(self, app) -> PushService:
        """Let the app post here: a loopback test receiver (PORTAL_PUSH_TEST_RECEIVERS)."""
        app.config["PORTAL_PUSH_TEST_RECEIVERS"] = (("127.0.0.1", self.port),)
        return self

    def url(self, kind: str = "push", name: str = "phone") -> str:
        return f"{self.origin}/{kind}/{name}"

    def __enter__(self) -> PushService:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _Inbox:
    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


class SMTPServer:
    """aiosmtpd on 127.0.0.1, a real SMTP conversation; `.messages` are the parsed e-mails."""

    def __init__(self):
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return self.inbox.messages

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
