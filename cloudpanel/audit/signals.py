"""Sign-ins, sign-outs, failed sign-ins and lockouts, from Django's and axes' signals."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .services import audit_record


@receiver(user_logged_in, dispatch_uid="audit-login")
def on_login(sender, request, user, **kwargs):
    audit_record(action="auth.login", user=user, target=user)


@receiver(user_logged_out, dispatch_uid="audit-logout")
def on_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.logout", user=user, target=user)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def on_login_failed(sender, credentials, request=None, **kwargs):
    # Django passes the credentials with the password already masked; only the name is kept.
    username = str((credentials or {}).get("username", ""))[:150]
    audit_record(
        action="auth.login_failed", target_type="user", target_name=username,
        params={"username": username}, result="denied",
    )  # fmt: skip


@receiver(user_locked_out, dispatch_uid="audit-lockout")
def on_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    audit_record(
        action="auth.locked_out", target_type="user", target_name=str(username or "")[:150],
        params={"username": username, "ip_address": ip_address}, result="denied",
        message="Too many failed sign-ins: locked out for a while.",
    )  # fmt: skip
