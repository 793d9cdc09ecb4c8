"""gunicorn settings of one CARE-SSc app server (deploy/systemd/care-ssc@.service).

The bind address comes from the unit (`--bind 127.0.0.1:%i`); everything else is here.
"""

import os

# Sync workers: each request holds one database connection for its whole life, and the pool
# (SQLAlchemy's default 5 + 10 per process) covers them. Two per core is a good start.
workers = int(os.environ.get("PORTAL_WORKERS", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 25
keepalive = 5
# A worker is replaced after this many requests, with jitter so that they do not all restart
# at once: a slow leak can never take a server down.
max_requests = 5000
max_requests_jitter = 500
# nginx logs every request (without the secrets in paths); the app logs its errors.
accesslog = None
errorlog = "-"
loglevel = "info"
# Forwarded headers are read by the app alone (PORTAL_PROXY_HOPS, werkzeug's ProxyFix): gunicorn
# trusts none, so there is one rule for them, not two.
forwarded_allow_ips = ""
proc_name = "care-ssc"
