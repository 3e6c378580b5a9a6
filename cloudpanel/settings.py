"""Settings from the environment, with embedded defaults for a laptop (see README)."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import ConnectionError as RedisConnectionError

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("CLOUDPANEL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    # Off unless asked for (`make dev` or DEBUG=true): the debug pages show settings and source.
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
)

DEBUG = env("DEBUG")


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into var/secret_key (0600).

    CLOUDPANEL_REQUIRE_SECRET_KEY=true refuses the generated key, for deployments whose
    processes run on several machines and must share one key.
    """
    if key := env.str("SECRET_KEY", default=""):
        return key
    if env.bool("CLOUDPANEL_REQUIRE_SECRET_KEY", default=False):
        raise ImproperlyConfigured("SECRET_KEY must be set (CLOUDPANEL_REQUIRE_SECRET_KEY)")
    path = VAR_DIR / "secret_key"
    try:
        if not path.exists():
            # Written whole to a private temporary file, then linked into place: the key is
            # never readable by others, and processes starting together agree on one key.
            tmp = path.with_name(f".secret_key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(50))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and {path} cannot be created or read: {exc}"
        ) from exc


SECRET_KEY = _secret_key()
# Encrypts host credentials at rest; defaults to a key derived from SECRET_KEY.
CREDENTIALS_KEY = env.str("CREDENTIALS_KEY", default="")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "servestatic",
    "axes",
    "cloudpanel",
    "cloudpanel.projects",
    "cloudpanel.jobs",
    "cloudpanel.accounts",
    "cloudpanel.audit",
    "hosts",
    "images",
    "instances",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # ServeStatic, only for STATIC_URL: files stream from async iterators under ASGI
    # (WhiteNoise's sync iterator made Django warn and buffer through sync_to_async).
    "cloudpanel.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "cloudpanel.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cloudpanel.audit.context.AuditContextMiddleware",  # the audit: who, from where
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cloudpanel.urls"
ASGI_APPLICATION = "cloudpanel.asgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cloudpanel.sqlite3'}"),
}
# Each web worker thread keeps its connection for a while (checked before reuse) instead of
# opening one per request: a new connection was about a tenth of a list request's CPU on
# SQLite, and far more on PostgreSQL. See cloudpanel.asgi for how threads close theirs.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web server, the worker and beat share the file without 'database is locked'.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        # Take the write lock when a transaction begins: concurrent writers then wait for
        # each other (busy_timeout) instead of failing with 'database is locked' midway.
        transaction_mode="IMMEDIATE",
    )
    # A file, not memory, so a real Celery worker started by a test can share it; one per
    # test run, so that parallel runs never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in throttling (cloudpanel/auth.py says why these limits): axes refuses locked-out
# sign-ins before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "cloudpanel.auth.LoginThrottleHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], ["ip_address"]]  # order: see the handler
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)  # one username, one address
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=20)  # any username
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "cloudpanel.auth.lockout_response"
AXES_VERBOSE = False  # no banner at every process start

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
CSRF_FAILURE_VIEW = "cloudpanel.views.csrf_failure"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Served from the apps' and static/ directories as they are (no collectstatic step): the file
# list is read once per process at start; DEBUG re-reads it on each request.
SERVESTATIC_USE_FINDERS = True

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis waits for messages with a 5 s blocking pop; redis-py 8's default
            # 5 s socket timeout races it and kills idle sockets. Keep the read timeout above
            # it. Live sockets share one channel per server process (cloudpanel.live.hub),
            # so the pool (per process and event loop) holds that one blocking pop, the hub's
            # group joins (at most cloudpanel.live.hub.LAYER_CONCURRENCY at once) and the
            # publisher's sends; past the bound redis-py raises instead of opening more.
            # After a Redis restart every pooled connection is dead: a command is tried once
            # more on a new one (channels-redis delivers at least once anyway) rather than
            # lost, which no socket would notice (a restart the hub's own receive did not
            # see is caught by its Redis run id check, see cloudpanel.live.hub).
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 15,
                    "max_connections": 100,
                    "retry_on_error": [RedisConnectionError],
                }
            ],
            # The hub's list holds every live message of its process: group_send skips (drops,
            # logged by channels_redis at INFO) a list that is full, so it gets room for a
            # process far behind (its members resync only when the hub saw the layer fail).
            # Other channels keep channels-redis' default of 100.
            "capacity": 100,
            "channel_capacity": {"hub.*": 10_000},
        },
    }
}

# Celery: JSON only, late acks so a killed worker's task is not lost silently,
# and time limits so no libvirt call can hold a worker forever.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=1800)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=1900)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "hosts-health": {"task": "hosts.tasks.check_all_hosts", "schedule": 30.0},
    "jobs-reap": {"task": "jobs.reap_stale_jobs", "schedule": 30.0},
    "instances-reconcile": {"task": "instances.reconcile", "schedule": 60.0},
    "images-sweep-incoming": {"task": "images.sweep_incoming", "schedule": 3600.0},
    "hosts-mark-down": {"task": "hosts.tasks.mark_lost_hosts", "schedule": 30.0},
    "backups-retention": {"task": "instances.backup_retention", "schedule": 3600.0},
    "images-distribute": {"task": "images.distribute_all", "schedule": 600.0},
}
# Periodic upkeep (health, reaper, reconcile) has its own queue and worker, so it never
# waits behind long jobs such as a large image import.
CELERY_TASK_ROUTES = {
    "hosts.tasks.check_all_hosts": {"queue": "periodic"},
    "jobs.reap_stale_jobs": {"queue": "periodic"},
    "instances.reconcile": {"queue": "periodic"},
    "images.sweep_incoming": {"queue": "periodic"},
    "hosts.tasks.mark_lost_hosts": {"queue": "periodic"},
    "instances.backup_retention": {"queue": "periodic"},
    "images.distribute_all": {"queue": "periodic"},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# libvirt: connect timeout per host so one dead host never blocks the others.
LIBVIRT_CONNECT_TIMEOUT = env.float("LIBVIRT_CONNECT_TIMEOUT", default=10.0)
# Directories a qemu+unix:///system?socket=PATH host's socket may lie in (hosts.uris).
LIBVIRT_SOCKET_DIRS = env.list("LIBVIRT_SOCKET_DIRS", default=["/run/libvirt", "/var/run/libvirt"])
# The live browser: the host watcher (`manage.py watch_hosts`), metrics, consoles.
# Seconds between two bulk stats sweeps of a host, and how long samples are kept (Redis).
WATCHER_STATS_INTERVAL = env.float("WATCHER_STATS_INTERVAL", default=5.0)
METRICS_RETENTION_SECONDS = env.int("METRICS_RETENTION_SECONDS", default=3600)
# A watcher owns a host through a Redis lease it renews; another takes over once it lapses.
WATCHER_LEASE_SECONDS = env.float("WATCHER_LEASE_SECONDS", default=15.0)
# /metrics (Prometheus): a bearer token, or else a client address in these networks.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
# Console tickets: single use, bound to the user and the instance, valid this many seconds.
CONSOLE_TICKET_SECONDS = env.int("CONSOLE_TICKET_SECONDS", default=30)
# Events a status socket may have waiting to be sent before it is dropped to a resync.
STATUS_SOCKET_QUEUE = env.int("STATUS_SOCKET_QUEUE", default=256)
IMAGE_STORE = Path(env.str("IMAGE_STORE", default=str(VAR_DIR / "images")))
# Under ASGI Django spools each request body to a temporary file before the view runs: keep
# that on the image store's filesystem, not in a small /tmp.
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=str(IMAGE_STORE / ".incoming"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)


def _rate(name: str, default: str) -> str | None:
    value = env.str(name, default=default).strip()
    return None if value.lower() in ("", "none", "off") else value


REST_FRAMEWORK = {
    # Personal tokens first: a request without valid credentials is then a 401 with
    # `WWW-Authenticate: Bearer realm="api"`; the session (with CSRF) is the browser's.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cloudpanel.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "cloudpanel.permissions.TokenAllowsWrites",
    ],
    # Bounded JSON (size and depth); the form parsers are DRF's.
    "DEFAULT_PARSER_CLASSES": [
        "cloudpanel.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "cloudpanel.pagination.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cloudpanel.api.exception_handler",
    # Request rates (per web process, in its cache): per user for everything signed in,
    # per client address for what anyone may read (the schema). "none" turns one off.
    # The token endpoint's rate per client address comes on top of the sign-in lockout.
    "DEFAULT_THROTTLE_CLASSES": [
        "cloudpanel.accounts.throttling.UserRate",
        "cloudpanel.accounts.throttling.AnonRate",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "auth": _rate("API_TOKEN_RATE", "20/minute"),
        "user": _rate("API_USER_RATE", "1200/minute"),
        "anon": _rate("API_ANON_RATE", "120/minute"),
    },
    # The client address is REMOTE_ADDR (uvicorn rewrites it for trusted proxies only);
    # DRF would otherwise take any X-Forwarded-For a client sends.
    "NUM_PROXIES": 0,
}

SPECTACULAR_SETTINGS = {
    # Two choice sets are called "source" (an audit event's, a rebuild's): each its name.
    "ENUM_NAME_OVERRIDES": {
        "AuditSourceEnum": "cloudpanel.audit.models.AuditEvent.Source",
        "RebuildSourceEnum": "instances.operations.rebuild.SOURCES",
    },
    "TITLE": "cloudpanel API",
    "DESCRIPTION": "REST API of cloudpanel, a dashboard for a private KVM/libvirt cloud.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes says every sign-in at INFO; its failures and lockouts are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}

# TLS, behind a TLS-terminating proxy. HTTPS=true (the default when an https:// origin is
# trusted; SECURE_COOKIES is its older name): cookies go over https only, and HSTS
# (SECURE_HSTS_SECONDS, one year) is sent on https requests. TRUST_PROXY_HEADERS=true: the
# proxy's X-Forwarded-Proto says whether a request came over https (the proxy must set it,
# and be the only way in: otherwise any client could claim https). Not needed under
# `make run`, whose uvicorn takes X-Forwarded-Proto from FORWARDED_ALLOW_IPS only. All off
# by default, so that `make run` works on plain http://127.0.0.1:8000.
HTTPS = env.bool(
    "HTTPS",
    default=env.bool(
        "SECURE_COOKIES", default=any(o.startswith("https://") for o in CSRF_TRUSTED_ORIGINS)
    ),
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
if HTTPS:
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if env.bool("TRUST_PROXY_HEADERS", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Request bodies Django reads into memory (forms, JSON: the JSON parser keeps to it too)
# and form fields; image uploads stream to FILE_UPLOAD_TEMP_DIR instead, bounded by
# IMAGE_MAX_FILE_SIZE.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Image files (uploaded or imported from a URL) and their virtual disk sizes, in GiB.
IMAGE_MAX_FILE_SIZE = env.int("IMAGE_MAX_FILE_GIB", default=100) * 1024**3
IMAGE_MAX_VIRTUAL_SIZE = env.int("IMAGE_MAX_VIRTUAL_GIB", default=2048) * 1024**3

# Business continuity. A host offline this long marks its instances host-down (they may be
# rebuilt elsewhere); backups kept per instance by the periodic retention task (0: all).
HOST_DOWN_GRACE_SECONDS = env.int("HOST_DOWN_GRACE_SECONDS", default=300)
BACKUP_KEEP_LAST = env.int("BACKUP_KEEP_LAST", default=7)
# Seconds between two reads of a migration's libvirt job stats (progress to the browser).
MIGRATION_PROGRESS_INTERVAL = env.float("MIGRATION_PROGRESS_INTERVAL", default=1.0)
# Rows one audit export (CSV or JSON) holds at most.
AUDIT_EXPORT_MAX_ROWS = env.int("AUDIT_EXPORT_MAX_ROWS", default=100_000)
