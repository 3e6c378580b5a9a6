"""Settings from the environment, with embedded defaults for a laptop (see README)."""

import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("CLOUDPANEL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, True),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "testserver"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
)

DEBUG = env("DEBUG")


def _secret_key() -> str:
    """Production must set SECRET_KEY; development generates one once into var/."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


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
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "servestatic",
    "cloudpanel",
    "cloudpanel.projects",
    "cloudpanel.jobs",
    "hosts",
    "images",
    "instances",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Async under ASGI: static files are streamed without a thread per file (WhiteNoise's
    # sync iterator made Django warn and buffer through sync_to_async).
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
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
        "CONFIG": {"hosts": [REDIS_URL]},
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
}
# Periodic upkeep (health, reaper, reconcile) has its own queue and worker, so it never
# waits behind long jobs such as a large image import.
CELERY_TASK_ROUTES = {
    "hosts.tasks.check_all_hosts": {"queue": "periodic"},
    "jobs.reap_stale_jobs": {"queue": "periodic"},
    "instances.reconcile": {"queue": "periodic"},
    "images.sweep_incoming": {"queue": "periodic"},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# libvirt: connect timeout per host so one dead host never blocks the others.
LIBVIRT_CONNECT_TIMEOUT = env.float("LIBVIRT_CONNECT_TIMEOUT", default=10.0)
# Directories a qemu+unix:///system?socket=PATH host's socket may lie in (hosts.uris).
LIBVIRT_SOCKET_DIRS = env.list("LIBVIRT_SOCKET_DIRS", default=["/run/libvirt", "/var/run/libvirt"])
IMAGE_STORE = Path(env.str("IMAGE_STORE", default=str(VAR_DIR / "images")))
# Under ASGI Django spools each request body to a temporary file before the view runs: keep
# that on the image store's filesystem, not in a small /tmp.
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=str(IMAGE_STORE / ".incoming"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cloudpanel.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
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
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
