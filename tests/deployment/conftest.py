"""The portal deployed as docs/deployment.md says, on this machine: nginx from deploy/nginx
terminating TLS for a real-looking host name, two gunicorn app servers started with the command
line of deploy/systemd/care-ssc@.service, PostgreSQL with a migration owner and an app role,
Redis for the rate-limit counters, `PORTAL_ENV=production` and `PORTAL_PROXY_HOPS=1`.

The certificate comes from a certificate authority made here, which Chromium trusts through an
NSS database (certutil) in a home folder of its own: WebAuthn refuses pages with certificate
errors, so flags that only silence the errors would not do. The host name resolves to
127.0.0.1 through Chromium's host-resolver rules.

Everything needs PostgreSQL, Redis, nginx and certutil; without one of them the tests say which
is missing and are skipped (`make test` installs nginx and libnss3-tools as it installs Chromium).
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
HOST = "portal.care-ssc.test"
APP_ROLE = "care_ssc_app_test"
OWNER_ROLE = "care_ssc_owner_test"
# The Redis database of the deployed servers' counters, apart from the test suite's own.
REDIS_DB = 10


def pytest_collection_modifyitems(items):
    for item in items:
        if "/deployment/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.commits)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_url() -> sa.URL:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql")):
        pytest.skip(
            "the deployment runs on PostgreSQL and Redis as in production "
            "(CI's PostgreSQL leg runs it; set DATABASE_URL=postgresql://...)"
        )
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def _require(command: str, package: str) -> str:
    found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip(
            f"{command} is not installed (Debian package {package}; `make test` installs it)"
        )
    return found


def _redis_up() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as connection:
            connection.sendall(f"SELECT {REDIS_DB}\r\nFLUSHDB\r\n".encode())
            reply = connection.recv(100)
    except OSError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    assert b"+OK" in reply


# --- certificates ------------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    chain: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_certificates(folder: Path) -> Certificates:
    """A certificate authority of this test run, and a server certificate for HOST it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("CARE-SSc deployment test CA"))
        .issuer_name(_name("CARE-SSc deployment test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(folder / "ca.pem", folder / "fullchain.pem", folder / "privkey.pem")
    certificates.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificates.chain.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    _write_key(server_key, certificates.key)
    return certificates


def trust_in_chromium(home: Path, ca: Path) -> None:
    """Chromium on Linux reads the user's trust anchors from ~/.pki/nssdb."""
    certutil = _require("certutil", "libnss3-tools")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(
        [certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, capture_output=True
    )
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{nssdb}", "-n", "care-ssc-test-ca", "-t", "C,,", "-i", ca],
        check=True,
        capture_output=True,
    )


def vapid_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# --- processes -----------------------------------------------------------------------------------


def unit_commands(unit: str, **replacements: str) -> list[list[str]]:
    """Every ExecStart of a systemd unit in deploy/, in order, its paths moved to this checkout."""
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    commands = []
    for line in text.splitlines():
        if not line.startswith("ExecStart="):
            continue
        command = line.removeprefix("ExecStart=").replace("/srv/care-ssc/.venv/bin/", f"{BIN}/")
        for old, new in replacements.items():
            command = command.replace(old, new)
        commands.append(shlex.split(command))
    return commands


def unit_environment(unit: str) -> dict[str, str]:
    """The Environment= lines of a unit (its EnvironmentFile is the deployment's env)."""
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    pairs = [
        line.removeprefix("Environment=").split("=", 1)
        for line in text.splitlines()
        if line.startswith("Environment=")
    ]
    return {name: value.replace("wsgi.py", str(ROOT / "wsgi.py")) for name, value in pairs}


def unit_command(unit: str, **replacements: str) -> list[str]:
    """The one ExecStart of a service unit."""
    (command,) = unit_commands(unit, **replacements)
    return command


def nginx_site(certificates: Certificates, https_port: int, http_port: int, app_ports, cache: Path):
    """deploy/nginx/care-ssc.conf with the example's host, ports and paths replaced, and nothing
    else: what the test runs is what an operator installs."""
    site = (ROOT / "deploy" / "nginx" / "care-ssc.conf").read_text()
    replacements = {
        "portal.example.org": HOST,
        "/etc/ssl/care-ssc/fullchain.pem": str(certificates.chain),
        "/etc/ssl/care-ssc/privkey.pem": str(certificates.key),
        "/var/cache/nginx/care-ssc": str(cache),
        "listen 443 ssl http2 default_server;": (
            f"listen 127.0.0.1:{https_port} ssl http2 default_server;"
        ),
        "listen [::]:443 ssl http2 default_server;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{app_ports[0]};",
        "server 127.0.0.1:8002;": f"server 127.0.0.1:{app_ports[1]};",
        "return 301 https://portal.care-ssc.test$request_uri;": (
            f"return 301 https://{HOST}:{https_port}$request_uri;"
        ),
    }
    for old, new in replacements.items():
        assert old in site or old.startswith("return 301"), f"deploy/nginx lost {old!r}"
        site = site.replace(old, new)
    return site


def nginx_main(folder: Path, site: Path) -> str:
    """The test's nginx.conf: what Debian's /etc/nginx/nginx.conf provides around a site."""
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    access_log {folder}/access.log;
    include {site};
}}
"""


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the deployment ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def getheader(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Deployment:
    origin: str
    https_port: int
    http_port: int
    app_ports: tuple[int, int]
    env: dict[str, str]
    owner_env: dict[str, str]
    certificates: Certificates
    chromium_home: Path
    access_log: Path
    database_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list = field(default_factory=list)

    def start(self, command: list[str], log: Path, **kwargs) -> subprocess.Popen:
        output = log.open("w")
        self.logs.append(output)
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **kwargs)
        self.processes.append(process)
        return process

    def flask(self, *args: str, owner: bool = False) -> subprocess.CompletedProcess:
        """A `flask` command run as the operator would, as the app role (or the owner)."""
        return subprocess.run(
            [str(BIN / "flask"), *args],
            env=self.owner_env if owner else self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source: str = "127.0.0.1",
        port: int | None = None,
    ) -> Reply:
        """One HTTPS request to nginx from a chosen loopback address, with SNI and Host = HOST;
        or plain HTTP straight to an app server when `port` is given."""
        if port is not None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        else:
            raw = socket.create_connection(
                ("127.0.0.1", self.https_port), timeout=20, source_address=(source, 0)
            )
            connection = http.client.HTTPSConnection(HOST, self.https_port, timeout=20)
            connection.sock = self.tls_context().wrap_socket(raw, server_hostname=HOST)
        all_headers = {"Host": f"{HOST}:{self.https_port}", **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        reply = Reply(response.status, response.headers, response.read())
        connection.close()
        return reply


def _create_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        for role in (APP_ROLE, OWNER_ROLE):
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
            )
            if exists:
                connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
                connection.execute(sa.text(f'DROP ROLE "{role}"'))
        connection.execute(sa.text(f'CREATE ROLE "{OWNER_ROLE}" LOGIN'))
        connection.execute(sa.text(f'CREATE ROLE "{APP_ROLE}" LOGIN'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"'))


def _drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        for role in (APP_ROLE, OWNER_ROLE):
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


def _url_as(url: sa.URL, role: str, database: str) -> str:
    """A plain postgresql:// URL, as an operator writes it (pg_dump reads it too)."""
    return url.set(
        drivername="postgresql", username=role, password=None, database=database
    ).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base_url = _postgres_url()
    _redis_up()
    nginx = _require("nginx", "nginx-light")
    folder = tmp_path_factory.mktemp("deployment")
    certificates = make_certificates(folder)
    chromium_home = folder / "chromium-home"
    trust_in_chromium(chromium_home, certificates.ca)

    database = f"portal_deploy_{os.getpid()}"
    admin = sa.create_engine(base_url.set(database="postgres"))
    _create_database(admin, database)

    https_port, http_port = free_port(), free_port()
    app_ports = (free_port(), free_port())
    origin = f"https://{HOST}:{https_port}"
    checkpoints = folder / "audit-checkpoints.jsonl"
    # deploy/portal.env.example, filled in.
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "FLASK_APP": str(ROOT / "wsgi.py"),
        "PORTAL_ENV": "production",
        "PORTAL_ORIGIN": origin,
        "PORTAL_RP_ID": HOST,
        "PORTAL_PROXY_HOPS": "1",
        "DATABASE_URL": _url_as(base_url, APP_ROLE, database),
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_AUDIT_KEY": secrets.token_urlsafe(48),
        "PORTAL_CONTACT_KEY": Fernet.generate_key().decode(),
        "PORTAL_VAPID_PRIVATE_KEY": vapid_private_key(),
        "PORTAL_AUDIT_CHECKPOINT_FILE": str(checkpoints),
        "PORTAL_MAX_CONTENT_LENGTH": "65536",
        "PORTAL_WORKERS": "1",
    }
    owner_env = {**env, "DATABASE_URL": _url_as(base_url, OWNER_ROLE, database)}
    deployment = Deployment(
        origin=origin,
        https_port=https_port,
        http_port=http_port,
        app_ports=app_ports,
        env=env,
        owner_env=owner_env,
        certificates=certificates,
        chromium_home=chromium_home,
        access_log=folder / "care-ssc.access.log",
        database_url=env["DATABASE_URL"],
    )
    try:
        # The upgrade order of docs/deployment.md: migrate as the owner, grant the app role.
        for step in (("db", "upgrade"), ("database", "grant-app-role", APP_ROLE)):
            done = deployment.flask(*step, owner=True)
            assert done.returncode == 0, done.stdout + done.stderr
        for port in app_ports:
            log = folder / f"gunicorn-{port}.log"
            command = unit_command("care-ssc@.service", **{"%i": str(port)})
            process = deployment.start(command, log, cwd=ROOT, env=env)
            wait_for_port(port, process, log)

        cache = folder / "cache"
        site = folder / "care-ssc.conf"
        site.write_text(
            nginx_site(certificates, https_port, http_port, app_ports, cache).replace(
                "/var/log/nginx/care-ssc.access.log", str(deployment.access_log)
            )
        )
        main = folder / "nginx.conf"
        main.write_text(nginx_main(folder, site))
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / temp).mkdir()
        checked = subprocess.run(
            [nginx, "-t", "-c", str(main), "-p", str(folder)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        nginx_log = folder / "nginx.out"
        process = deployment.start(
            [nginx, "-c", str(main), "-p", str(folder), "-g", "daemon off;"], nginx_log
        )
        wait_for_port(https_port, process, nginx_log)
        yield deployment
    finally:
        for process in reversed(deployment.processes):
            stop(process)
        for output in deployment.logs:
            output.close()
        _drop_database(admin, database)
        admin.dispose()


@contextmanager
def portal_on(database_url: str, deployment: Deployment) -> Iterator[Flask]:
    """The portal's code in this process, on one of the deployment's databases (for set-up and
    for reading what a restored database serves)."""
    from patient_portal import create_app
    from patient_portal.extensions import db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": sa.make_url(database_url)
            .set(drivername="postgresql+psycopg")
            .render_as_string(hide_password=False),
            "SECRET_KEY": deployment.env["SECRET_KEY"],
            "PORTAL_AUDIT_KEY": deployment.env["PORTAL_AUDIT_KEY"],
            "PORTAL_AUDIT_CHECKPOINT_FILE": deployment.env["PORTAL_AUDIT_CHECKPOINT_FILE"],
            "PORTAL_ORIGIN": deployment.origin,
            "PORTAL_RP_ID": HOST,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def participant_session(deployment: Deployment) -> Iterator[str]:
    """A participant of JGH with a live session on the deployed database; the cookie's token.

    Set up from the test's side (as a coordinator's desk and a sign-in would leave it), so the
    test can aim at what it checks."""
    from patient_portal.accounts import services
    from patient_portal.extensions import db
    from tests.factories import open_session_for

    with portal_on(deployment.owner_env["DATABASE_URL"], deployment):
        coordinator, _ = services.create_staff(
            f"desk-{secrets.token_hex(4)}@jgh.example", "Desk", "coordinator", ["JGH"], None
        )
        participant, _ = services.enrol_participant("JGH", "en", None, coordinator)
        db.session.commit()
        yield open_session_for(participant)
