"""Settings for the A2I loop dashboard: one module, driven by environment variables.

Every variable has a safe local default (SQLite under var/, DEBUG on, Redis on
localhost). `.env.example` and docs/configuration.md list them all. AWS endpoints, region
and credentials are *not* configured here: boto3 reads its own standard
variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME, AWS_PROFILE,
...) so pointing the product at A2I Local or at AWS is configuration only.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    # An empty variable counts as unset, so `NAME=` lines copied from .env.example
    # (or a compose file's `NAME: ""`) mean "use the default".
    return os.environ.get(name, "").strip() or default


def envbool(name: str, default: str) -> bool:
    # A malformed boolean is an error, not False: "DEBUG=ture" must not silently
    # turn debug off (or on).
    value = env(name, default).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def envint(name: str, default: str) -> int:
    value = env(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", "true")

SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "dashboard.admin_site.AdminConfig",  # django.contrib.admin, with its site's input checked
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_filters",
    "django_tables2",
    "axes",
    "loops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite file under var/ by default; PostgreSQL in CI and production
# (DATABASE_URL=postgres://user@host:5432/name).
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'dashboard.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", "60"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the Celery worker writes a sync page.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend with each user's permissions cached (loops.services.permission_cache).
    "loops.backends.CachedPermissionsBackend",
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # the dashboard shows every time in UTC
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
# Files browsers ask for at the site's root (/favicon.ico), served by whitenoise.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Production hardening; `manage.py check --deploy` with DEBUG off reports nothing.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false" if DEBUG else "true")
# Cookies only over HTTPS in production; SECURE_COOKIES=false serves a DEBUG-off stack over
# plain HTTP (docker compose on localhost, no TLS proxy in front).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", "false" if DEBUG else "true")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000")
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): the app's own scripts, styles and images only.
# No inline script or style attribute anywhere (JavaScript lives in static/js/), and htmx
# is configured not to evaluate expressions (base.html), so nothing needs 'unsafe-*'.
_SELF, _NONE = "'self'", "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [_SELF],
        "img-src": [_SELF, "data:"],
        "connect-src": [_SELF],
        "object-src": [_NONE],
        "base-uri": [_SELF],
        "form-action": [_SELF],
        "frame-ancestors": [_NONE],
    }
}

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for LOGIN_LOCKOUT_MINUTES (429, with
# templates/registration/locked_out.html). A success resets the count.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "5")
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Behind a proxy every request comes from the proxy's address: the client's is in
# X-Forwarded-For. TRUSTED_PROXIES says how many proxies append to it (0: none, use the
# peer's address); entries to the left of those could be forged by the client.
TRUSTED_PROXIES = envint("TRUSTED_PROXIES", "0")
AXES_CLIENT_IP_CALLABLE = "loops.views.access.client_ip"
# The username an attempt is counted under, cut to what django-axes' tables hold.
AXES_USERNAME_CALLABLE = "loops.views.access.login_username"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # axes: lock-outs are warnings; every login and its start-up banner are not worth a line.
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- A2I ---------------------------------------------------------------------

# Regions whose flow definitions and loops are monitored.
A2I_REGIONS = envlist("A2I_REGIONS", env("AWS_DEFAULT_REGION", "us-east-1"))
# botocore "standard" retry mode: total attempts per call (throttling and 5xx),
# for background work (sync, bulk actions), where waiting out a throttle is right.
A2I_MAX_ATTEMPTS = envint("A2I_MAX_ATTEMPTS", "8")
A2I_CONNECT_TIMEOUT = envint("A2I_CONNECT_TIMEOUT", "5")
A2I_READ_TIMEOUT = envint("A2I_READ_TIMEOUT", "30")
# Calls made while a person waits for a page (loop answers from S3, "refresh from
# A2I") fail fast instead: fewer attempts and shorter timeouts.
A2I_INTERACTIVE_MAX_ATTEMPTS = envint("A2I_INTERACTIVE_MAX_ATTEMPTS", "2")
A2I_INTERACTIVE_TIMEOUT = envint("A2I_INTERACTIVE_TIMEOUT", "5")

# Sync cadence (seconds).
A2I_DISCOVERY_INTERVAL = envint("A2I_DISCOVERY_INTERVAL", "600")
A2I_INCREMENTAL_SYNC_INTERVAL = envint("A2I_INCREMENTAL_SYNC_INTERVAL", "30")
A2I_FULL_SYNC_INTERVAL = envint("A2I_FULL_SYNC_INTERVAL", str(6 * 3600))
# Incremental sync lists from (oldest non-terminal or newest seen) minus this margin,
# to absorb clock skew and loops whose CreationTime is earlier than their visibility.
A2I_INCREMENTAL_MARGIN = envint("A2I_INCREMENTAL_MARGIN", "300")
# How long one sync may hold its flow definition's claim before another may take it.
A2I_SYNC_CLAIM_SECONDS = envint("A2I_SYNC_CLAIM_SECONDS", "900")
# Database connections that write listed pages while the next page is fetched.
A2I_SYNC_WRITERS = envint("A2I_SYNC_WRITERS", "2")
# Creation-time slices of one flow definition listed at once (1 = one paginator, in order).
A2I_SYNC_SLICES = envint("A2I_SYNC_SLICES", "8")
# A full sync of a flow definition spreads its slices over the workers as a Celery
# group (a chord) instead of listing them all in one task.
A2I_SYNC_DISTRIBUTE = envbool("A2I_SYNC_DISTRIBUTE", "false")
# ListHumanLoops carries no FailureCode: at most this many newly Failed loops are
# described per sync to fill it in (the rest on later syncs).
A2I_SYNC_DESCRIBE_LIMIT = envint("A2I_SYNC_DESCRIBE_LIMIT", "50")
# The overview's aggregates are refreshed after a sync that changed something, or
# when they are older than this many seconds (time windows move on their own).
A2I_STATS_MAX_AGE = envint("A2I_STATS_MAX_AGE", "120")
# Selections larger than this run as a Celery task with progress.
A2I_BULK_ACTION_THRESHOLD = envint("A2I_BULK_ACTION_THRESHOLD", "20")
# Reading the reviewers' answers (output.json) of Completed loops in the background:
# S3 reads at once, the largest answerContent kept (a larger one keeps its metadata and
# a "too large" marker), attempts per unreadable file (with backoff) before giving up,
# and seconds between beat's ingestion runs (a sync that changed loops also queues one).
A2I_ANSWERS_CONCURRENCY = envint("A2I_ANSWERS_CONCURRENCY", "16")
A2I_ANSWERS_MAX_BYTES = envint("A2I_ANSWERS_MAX_BYTES", str(256 * 1024))
A2I_ANSWERS_MAX_ATTEMPTS = envint("A2I_ANSWERS_MAX_ATTEMPTS", "5")
A2I_ANSWERS_INTERVAL = envint("A2I_ANSWERS_INTERVAL", "60")
# The loop page reads output.json while a person waits: above this size it shows the
# file's metadata and a download link instead of parsing it.
A2I_OUTPUT_MAX_BYTES = envint("A2I_OUTPUT_MAX_BYTES", str(1024 * 1024))
# The most time (s) a small batch may spend calling A2I inside the web request that
# confirmed it, with the interactive client; the loops left then go to a worker.
A2I_ACTION_INLINE_SECONDS = envint("A2I_ACTION_INLINE_SECONDS", "8")
# The "discover flow definitions now" button runs at most once per this many seconds.
A2I_DISCOVER_NOW_INTERVAL = envint("A2I_DISCOVER_NOW_INTERVAL", "60")
# Tuning of the stop/delete actions (constants, not environment variables): the
# service's own retries of a call still throttled after botocore's, with exponential
# backoff and full jitter from this first delay; how long stop-then-delete waits for
# Stopped, polling DescribeHumanLoop from this first interval; the settle margin.
A2I_ACTION_THROTTLE_RETRIES = 5
A2I_ACTION_THROTTLE_BACKOFF_SECONDS = 1.0
A2I_ACTION_STOP_WAIT_SECONDS = 120
A2I_ACTION_POLL_SECONDS = 0.5
# A stop or delete A2I never answered ("unknown") is settled as not received only when
# the loop is seen unchanged at least this long after the call (A2I may act on a request
# it received late); the settle task describes such loops after this delay.
A2I_ACTION_SETTLE_MARGIN_SECONDS = 60

# --- Alerts, notifications, metrics --------------------------------------------

# Absolute links in notifications (to the alerts page, the filtered loop list).
A2I_SITE_URL = env("A2I_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Seconds between evaluations of the alert rules (Celery beat).
A2I_ALERT_INTERVAL = envint("A2I_ALERT_INTERVAL", "60")
# A firing rule whose condition clears is held firing this long before it resolves, so a
# rule that flaps sends one notification per episode instead of one per evaluation.
A2I_ALERT_HOLD_SECONDS = envint("A2I_ALERT_HOLD_SECONDS", "300")
# Webhook and Slack deliveries: seconds to connect and to wait for an answer.
A2I_NOTIFY_TIMEOUT = envint("A2I_NOTIFY_TIMEOUT", "10")
# A failed delivery is retried this many times in all, waiting 30 s, 60 s, 120 s, ...
A2I_NOTIFY_MAX_ATTEMPTS = envint("A2I_NOTIFY_MAX_ATTEMPTS", "5")
A2I_NOTIFY_RETRY_SECONDS = envint("A2I_NOTIFY_RETRY_SECONDS", "30")
# Addresses (or networks, CIDR) that may read /metrics without a token. Empty: a token is
# always needed; /metrics is never public by default.
A2I_METRICS_ALLOW = envlist("A2I_METRICS_ALLOW", "")


def email_settings(url: str) -> dict:
    """Django's e-mail settings from one URL, e.g. smtp+tls://user:password@host:587,
    smtps://host:465, smtp://host:25, file:///path/to/folder, console://, locmem://."""
    parts = urlsplit(url)
    backends = {
        "smtp": "smtp", "smtp+tls": "smtp", "smtps": "smtp", "submission": "smtp",
        "file": "filebased", "console": "console", "locmem": "locmem", "dummy": "dummy",
    }
    if parts.scheme not in backends:
        raise ImproperlyConfigured(f"EMAIL_URL scheme must be one of {', '.join(backends)}, got {parts.scheme!r}")
    values = {"EMAIL_BACKEND": f"django.core.mail.backends.{backends[parts.scheme]}.EmailBackend"}
    if parts.scheme == "file":
        values["EMAIL_FILE_PATH"] = unquote(parts.netloc + parts.path)
    elif backends[parts.scheme] == "smtp":
        default_port = {"smtps": 465, "smtp+tls": 587, "submission": 587}.get(parts.scheme, 25)
        values.update(
            EMAIL_HOST=parts.hostname or "localhost",
            EMAIL_PORT=parts.port or default_port,
            EMAIL_HOST_USER=unquote(parts.username or ""),
            EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
            EMAIL_USE_TLS=parts.scheme in ("smtp+tls", "submission"),
            EMAIL_USE_SSL=parts.scheme == "smtps",
        )
    return values


# E-mail notifications: EMAIL_URL when set, otherwise the usual variables (SMTP).
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "false")
EMAIL_USE_SSL = False
# A mail server that does not answer must not hold a worker for long.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "10")
if env("EMAIL_URL", ""):
    globals().update(email_settings(env("EMAIL_URL", "")))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "a2i-dashboard@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- A2I's EventBridge events (docs/events.md) ----------------------------------

# The bearer token POST /events/eventbridge/ requires (an EventBridge connection sends it
# as an API-key header); with none configured the endpoint answers 404.
A2I_EVENTS_TOKEN = env("A2I_EVENTS_TOKEN", "")
if A2I_EVENTS_TOKEN and len(A2I_EVENTS_TOKEN) < 32:
    raise ImproperlyConfigured("A2I_EVENTS_TOKEN must be at least 32 characters (or unset, to turn the endpoint off)")
# SQS queues `manage.py consume_events` reads (comma-separated; typically one per region).
A2I_EVENTS_QUEUE_URLS = envlist("A2I_EVENTS_QUEUE_URLS", "")
# Seconds between an event and the stats refresh it triggers: every event of that window
# shares one refresh per flow definition (a constant, not an environment variable).
A2I_EVENTS_STATS_DELAY = 5

# --- Celery ------------------------------------------------------------------

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker `make run` falls back to when no Redis answers: kombu's
    # filesystem transport, one folder shared by every process (web, worker, beat),
    # and results in files, so no server at all is needed. Local development only.
    _broker_folder = BASE_DIR / env("CELERY_BROKER_FOLDER", "var/broker")  # relative to the project
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_folder / "queue"),
        "data_folder_out": str(_broker_folder / "queue"),
        "control_folder": str(_broker_folder / "control"),
        "store_processed": False,
    }
    # kombu lists these folders on every poll and fails when they are missing.
    for _folder in ("queue", "control", "results"):
        (_broker_folder / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", f"file://{_broker_folder / 'results'}")
else:
    CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
# The cache holds rate limits shared by every web process (the "discover now" button):
# Redis, or, with the embedded broker of `make run`, this process's memory.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        if CELERY_BROKER_URL.startswith("filesystem://")
        else {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "a2i-dashboard"}
    )
}
# Rendered overview and loop-list fragments are kept this many seconds at most, and
# dropped at once by any write of what they show (loops.services.page_cache); 0: off.
# Off with the process-local cache above, which other processes cannot invalidate.
PAGE_CACHE_SECONDS = envint("PAGE_CACHE_SECONDS", "10")
# Each user's permission set is kept this many seconds at most, and dropped at once by any
# change of groups or permissions (loops.services.permission_cache); 0: off. Off with the
# process-local cache, like the page cache.
PERMISSION_CACHE_SECONDS = envint("PERMISSION_CACHE_SECONDS", "60")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A task is acknowledged after it ran, so a worker killed mid-sync has it redelivered;
# every task is idempotent (syncs converge, actions skip loops already done).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The worker's CPU niceness (0-19), added at start (dashboard/celery.py): background work
# yields the CPU to pages on a shared machine. 0: the priority it was started with.
WORKER_NICENESS = envint("WORKER_NICENESS", "10")
if not 0 <= WORKER_NICENESS <= 19:
    raise ImproperlyConfigured(f"WORKER_NICENESS must be between 0 and 19, got {WORKER_NICENESS}")
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", "1800")
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", "1900")
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

CELERY_BEAT_SCHEDULE = {
    "discover-flow-definitions": {
        "task": "loops.tasks.discover_flow_definitions",
        "schedule": float(A2I_DISCOVERY_INTERVAL),
    },
    "sync-incremental": {
        "task": "loops.tasks.schedule_syncs",
        "schedule": float(A2I_INCREMENTAL_SYNC_INTERVAL),
        "kwargs": {"full": False},
    },
    "sync-full": {
        "task": "loops.tasks.schedule_syncs",
        "schedule": float(A2I_FULL_SYNC_INTERVAL),
        "kwargs": {"full": True},
    },
    "ingest-answers": {
        "task": "loops.tasks.ingest_answers",
        "schedule": float(A2I_ANSWERS_INTERVAL),
    },
    "worker-heartbeat": {
        "task": "loops.tasks.heartbeat",
        "schedule": 15.0,
    },
    "evaluate-alerts": {
        "task": "loops.tasks.evaluate_alerts",
        "schedule": float(A2I_ALERT_INTERVAL),
        # A tick that waited longer than one interval is dropped: the next one evaluates afresh.
        "options": {"expires": float(A2I_ALERT_INTERVAL)},
    },
}
