"""Settings: defaults, then the environment (prefix PORTAL_ plus DATABASE_URL, SECRET_KEY and
RATELIMIT_STORAGE_URI), then the test dictionary given to create_app."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; start-up stops with one line naming it."""


def _instance_file_secret(instance_path: Path, name: str) -> str:
    """Read a development secret kept in instance/, creating it once so restarts keep sessions."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _origin(value: str, name: str) -> str:
    """The origin as browsers serialise it in their Origin header: lower case, no default port."""
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if (
        scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigError(
            f"{name} must be an origin like https://portal.example.org, not {value!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {value!r}") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def _proxy_hops(value: str) -> int:
    if not value.isdigit() or int(value) > 5:
        raise ConfigError(f"PORTAL_PROXY_HOPS must be a whole number from 0 to 5, not {value!r}")
    return int(value)


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than 0, not {value!r}")
    return number


def _hour(value: str, name: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 23:
        raise ConfigError(f"{name} must be an hour from 0 to 23, not {value!r}")
    return int(value)


def _reminder_settings(env, origin: str) -> dict:
    """Reminders: SMTP, Web Push (VAPID, the push services allowed), the contact-details key
    and planning hours.

    Keys left empty are generated once into instance/ (patient_portal.reminders.channels); with
    several app servers, set them so that every server uses the same ones.
    """
    security = env.get("PORTAL_SMTP_SECURITY", "none")
    if security not in ("none", "starttls", "ssl"):
        raise ConfigError(f"PORTAL_SMTP_SECURITY must be none, starttls or ssl, not {security!r}")
    https_origin = origin if origin.startswith("https://") else ""
    subject = env.get("PORTAL_VAPID_SUBJECT") or https_origin or "mailto:reminders@localhost"
    if not subject.startswith(("mailto:", "https://")):
        raise ConfigError(
            f"PORTAL_VAPID_SUBJECT must start with mailto: or https://, not {subject!r}"
        )
    # The push services of the browsers (Chrome and other Chromium browsers, Firefox, Edge on
    # Windows, Safari): the server posts only there (patient_portal.reminders.channels).
    push_hosts = tuple(
        entry.strip().lower()
        for entry in env.get(
            "PORTAL_PUSH_HOSTS",
            "fcm.googleapis.com,updates.push.services.mozilla.com,*.notify.windows.com,"
            "web.push.apple.com,*.push.apple.com",
        ).split(",")
        if entry.strip()
    )
    for entry in push_hosts:
        name = entry.removeprefix("*.")
        if "." not in name or not all(
            label and label.replace("-", "").isalnum() for label in name.split(".")
        ):
            raise ConfigError(
                f"PORTAL_PUSH_HOSTS must be host names like fcm.googleapis.com or "
                f"*.push.apple.com, not {entry!r}"
            )
    # Tests only: the local push receiver, a loopback address and port, never in production.
    test_receivers = []
    for entry in env.get("PORTAL_PUSH_TEST_RECEIVERS", "").split(","):
        if not entry.strip():
            continue
        host, _, port = entry.strip().rpartition(":")
        host = host.strip("[]")
        if host not in ("127.0.0.1", "::1") or not port.isdigit():
            raise ConfigError(
                f"PORTAL_PUSH_TEST_RECEIVERS must be 127.0.0.1:<port> or [::1]:<port>, "
                f"not {entry!r}"
            )
        test_receivers.append((host, int(port)))
    if test_receivers and env.get("PORTAL_ENV") == "production":
        raise ConfigError("PORTAL_PUSH_TEST_RECEIVERS is for tests; it is refused in production")
    return {
        "PORTAL_SMTP_HOST": env.get("PORTAL_SMTP_HOST", ""),
        "PORTAL_SMTP_PORT": _positive_int(env.get("PORTAL_SMTP_PORT", "25"), "PORTAL_SMTP_PORT"),
        "PORTAL_SMTP_SECURITY": security,
        "PORTAL_SMTP_USERNAME": env.get("PORTAL_SMTP_USERNAME", ""),
        "PORTAL_SMTP_PASSWORD": env.get("PORTAL_SMTP_PASSWORD", ""),
        "PORTAL_SMTP_TIMEOUT": _positive_int(
            env.get("PORTAL_SMTP_TIMEOUT", "10"), "PORTAL_SMTP_TIMEOUT"
        ),
        "PORTAL_MAIL_FROM": env.get("PORTAL_MAIL_FROM", "CARE-SSc <no-reply@localhost>"),
        "PORTAL_VAPID_PRIVATE_KEY": env.get("PORTAL_VAPID_PRIVATE_KEY", ""),
        "PORTAL_VAPID_SUBJECT": subject,
        "PORTAL_PUSH_TIMEOUT": _positive_int(
            env.get("PORTAL_PUSH_TIMEOUT", "10"), "PORTAL_PUSH_TIMEOUT"
        ),
        "PORTAL_PUSH_HOSTS": push_hosts,
        "PORTAL_PUSH_TEST_RECEIVERS": tuple(test_receivers),
        "PORTAL_CONTACT_KEY": env.get("PORTAL_CONTACT_KEY", ""),
        "PORTAL_REMINDER_HOUR": _hour(
            env.get("PORTAL_REMINDER_HOUR", "18"), "PORTAL_REMINDER_HOUR"
        ),
        "PORTAL_REMINDER_MORNING_HOUR": _hour(
            env.get("PORTAL_REMINDER_MORNING_HOUR", "8"), "PORTAL_REMINDER_MORNING_HOUR"
        ),
        "PORTAL_REMINDER_HORIZON_DAYS": _positive_int(
            env.get("PORTAL_REMINDER_HORIZON_DAYS", "35"), "PORTAL_REMINDER_HORIZON_DAYS"
        ),
        "PORTAL_REMINDER_MAX_ATTEMPTS": _positive_int(
            env.get("PORTAL_REMINDER_MAX_ATTEMPTS", "5"), "PORTAL_REMINDER_MAX_ATTEMPTS"
        ),
        # A participant not seen on the portal for this many days is on the worklist.
        "PORTAL_WORKLIST_INACTIVE_DAYS": _positive_int(
            env.get("PORTAL_WORKLIST_INACTIVE_DAYS", "14"), "PORTAL_WORKLIST_INACTIVE_DAYS"
        ),
    }


def load_settings(instance_path: Path, environ: dict[str, str] | None = None) -> dict:
    """Build the Flask configuration from the environment, refusing bad values by name."""
    env = os.environ if environ is None else environ
    portal_env = env.get("PORTAL_ENV", "development")
    if portal_env not in ("development", "production", "test"):
        raise ConfigError(f"PORTAL_ENV must be development, production or test, not {portal_env!r}")
    production = portal_env == "production"

    secret_key = env.get("SECRET_KEY", "")
    if production and len(secret_key) < 32:
        raise ConfigError("SECRET_KEY must be set to at least 32 random characters in production")
    if not secret_key:
        secret_key = _instance_file_secret(instance_path, "secret_key")

    audit_key = env.get("PORTAL_AUDIT_KEY", "")
    if production and len(audit_key) < 32:
        raise ConfigError(
            "PORTAL_AUDIT_KEY must be set to at least 32 random characters in production"
        )
    if not audit_key:
        audit_key = _instance_file_secret(instance_path, "audit_key")
    checkpoint_file = env.get("PORTAL_AUDIT_CHECKPOINT_FILE") or str(
        instance_path / "audit-checkpoints.jsonl"
    )

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_path / 'portal.sqlite3'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if not database_url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ConfigError(
            f"DATABASE_URL must be an sqlite:/// or postgresql:// URL, not {database_url!r}"
        )

    origin = _origin(env.get("PORTAL_ORIGIN", "http://localhost:5000"), "PORTAL_ORIGIN")
    rp_id = env.get("PORTAL_RP_ID", "localhost")
    origin_host = urlsplit(origin).hostname or ""
    if not (origin_host == rp_id or origin_host.endswith("." + rp_id)):
        raise ConfigError(
            f"PORTAL_RP_ID {rp_id!r} must be the host of PORTAL_ORIGIN or a parent of it"
        )

    ratelimit_uri = env.get("RATELIMIT_STORAGE_URI", "memory://")
    if not ratelimit_uri.startswith(("memory://", "redis://", "rediss://")):
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI must be memory:// or redis://..., not {ratelimit_uri!r}"
        )
    if production and not origin.startswith("https://"):
        raise ConfigError(f"PORTAL_ORIGIN must be https:// in production, not {origin!r}")
    if production and ratelimit_uri.startswith("memory://"):
        raise ConfigError(
            "RATELIMIT_STORAGE_URI must point at Redis in production (shared counters)"
        )

    return {
        "PORTAL_ENV": portal_env,
        "SECRET_KEY": secret_key,
        # The audit chains' key: never in the database, so whoever edits the database cannot
        # re-chain what they changed (docs/audit.md).
        "PORTAL_AUDIT_KEY": audit_key,
        "PORTAL_AUDIT_CHECKPOINT_FILE": checkpoint_file,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # No ping at every checkout (a round trip per request): connections idle for longer
        # than PORTAL_DB_PING_AFTER seconds are pinged instead (patient_portal.db), and none is
        # kept past an hour, under any server-side idle timeout.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 3600, "hide_parameters": True},
        "PORTAL_DB_PING_AFTER": _positive_int(
            env.get("PORTAL_DB_PING_AFTER", "10"), "PORTAL_DB_PING_AFTER"
        ),
        "PORTAL_ORIGIN": origin,
        # How many proxies in front of the app set X-Forwarded-For/-Proto/-Host: their values are
        # trusted that many hops deep and no further (patient_portal.origin).
        "PORTAL_PROXY_HOPS": _proxy_hops(env.get("PORTAL_PROXY_HOPS", "0")),
        "PORTAL_RP_ID": rp_id,
        "PORTAL_RP_NAME": env.get("PORTAL_RP_NAME", "CARE-SSc"),
        "RATELIMIT_STORAGE_URI": ratelimit_uri,
        "RATELIMIT_HEADERS_ENABLED": True,
        # __Host-: the browser keeps it only if Secure, for this host alone and the whole path
        # (ASVS 3.3.3); plain HTTP in development cannot carry such a cookie.
        "SESSION_COOKIE_NAME": "__Host-portal_session" if production else "portal_session",
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PORTAL_HSTS": production,
        # A questionnaire can stay open for a long time: the CSRF token lives as long as the session.
        "WTF_CSRF_TIME_LIMIT": None,
        # Flask-WTF's HTTPS check compares the Referer with the request's own host; the portal
        # checks Origin (or Referer) against PORTAL_ORIGIN instead, in every mode
        # (patient_portal.origin, docs/security.md).
        "WTF_CSRF_SSL_STRICT": False,
        "MAX_CONTENT_LENGTH": _positive_int(
            env.get("PORTAL_MAX_CONTENT_LENGTH", "65536"), "PORTAL_MAX_CONTENT_LENGTH"
        ),
        "PORTAL_DEFAULT_LANGUAGE": env.get("PORTAL_DEFAULT_LANGUAGE", "fr"),
        "PORTAL_PROTOCOL_FILE": env.get("PORTAL_PROTOCOL_FILE", ""),
        "PORTAL_INSTRUMENTS_DIR": env.get("PORTAL_INSTRUMENTS_DIR", ""),
        "PORTAL_LOAD_DEMO": env.get("PORTAL_LOAD_DEMO", "") == "1",
        **_reminder_settings(env, origin),
    }
