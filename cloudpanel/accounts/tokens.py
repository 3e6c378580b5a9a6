"""Personal API tokens: issue, check, revoke.

A token is `cp_` followed by 43 random URL-safe characters. Only its sha256 is stored (the
secret is random and long, so a plain hash is enough), found by its first 12 characters.
The secret is shown once, when the token is issued.

Every token expires: 90 days unless asked otherwise, at most 365 days, for admins too (a
token that never expires is a password nobody rotates). A token may be scoped to one
project the user may see (it then reaches that project only and is never an admin's, see
cloudpanel.projects.access) and may be read-only. A token made with another token is no
wider than it: same scope, read-only if it is, and expiring no later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudpanel.audit.services import audit_record
from cloudpanel.errors import InvalidInput, NotFound, PermissionDenied
from cloudpanel.projects import access

from .models import ApiToken

TOKEN_PREFIX = "cp_"
PREFIX_LENGTH = 12
DEFAULT_DAYS = 90
MAX_DAYS = 365
# last_used_at is written at most this often per token: not one write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
LOGIN_TOKEN_NAME = "api login"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def issue_token(
    user,
    *,
    name: str,
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    project=None,
    read_only: bool = False,
    via_token: ApiToken | None = None,
) -> IssuedToken:
    """A new token of `user`. `via_token` is the token the request came with, if any: the
    new one may not reach further than it."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput({"name": "A token needs a name."})
    now = timezone.now()
    if expires_at is not None and expires_in_days is not None:
        raise InvalidInput("Give either expires_at or expires_in_days, not both.")
    if expires_at is None:
        days = DEFAULT_DAYS if expires_in_days is None else expires_in_days
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput({"expires_in_days": f"A token expires in 1 to {MAX_DAYS} days."})
        expires_at = now + timedelta(days=days)
        if expires_in_days is None and via_token is not None and via_token.expires_at:
            expires_at = min(expires_at, via_token.expires_at)  # the default, capped
    elif expires_at <= now:
        raise InvalidInput({"expires_at": "The expiry must be in the future."})
    elif expires_at > now + timedelta(days=MAX_DAYS):
        raise InvalidInput({"expires_at": f"A token expires within {MAX_DAYS} days."})
    if project is not None and not access.can_view(user, project):
        # Same answer as for a project that does not exist.
        raise InvalidInput({"project": "No such project."})
    if via_token is not None:
        if via_token.read_only and not read_only:
            raise PermissionDenied("A read-only token can only make read-only tokens.")
        if via_token.project_id is not None and (
            project is None or project.pk != via_token.project_id
        ):
            raise PermissionDenied("A project-scoped token can only make tokens of its project.")
        if via_token.expires_at is not None and expires_at > via_token.expires_at:
            raise InvalidInput(
                {"expires_at": "A token made with a token expires no later than it."}
            )
    for _attempt in range(5):
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    user=user,
                    name=name[:63],
                    prefix=secret[:PREFIX_LENGTH],
                    digest=digest_of(secret),
                    project=project,
                    read_only=read_only,
                    expires_at=expires_at,
                )
            audit_record(
                action="token.create",
                user=user,
                target=token,
                params={
                    "name": token.name,
                    "prefix": token.prefix,
                    "project": token.project_id,
                    "read_only": read_only,
                    "expires_at": expires_at,
                },
            )
            return IssuedToken(token=token, secret=secret)
        except IntegrityError:  # a prefix already taken: draw again
            continue
    raise RuntimeError("could not draw an unused token prefix")


class TokenRefused(Exception):
    """Unknown, revoked or expired token, or its user is inactive (a 401)."""


def check_secret(secret: str) -> ApiToken:
    """The live token this secret is, with its user loaded, or TokenRefused. One query,
    plus at most one write a minute for the last-used time."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) < PREFIX_LENGTH + 8:
        raise TokenRefused("Invalid token.")
    token = ApiToken.objects.select_related("user").filter(prefix=secret[:PREFIX_LENGTH]).first()
    if token is None or not hmac.compare_digest(token.digest, digest_of(secret)):
        raise TokenRefused("Invalid token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused("This token was revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused("This token has expired.")
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def tokens_of(user):
    return ApiToken.objects.filter(user=user).select_related("project")


def get_own_token(user, token_id) -> ApiToken:
    """One of the user's own tokens; anyone else's is not found."""
    try:
        return tokens_of(user).get(pk=token_id)
    except (ApiToken.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such token.") from None


def revoke_token(token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=token.revoked_at
        )
        if revoked:
            audit_record(action="token.revoke", target=token, params={"prefix": token.prefix})
    return token


def token_state(token: ApiToken, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"
