"""Access changes made outside the services (the Django admin, cascades, the shell) still
reach the user's open sockets."""

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .events import access_changed
from .models import Membership


@receiver(post_delete, sender=Membership, dispatch_uid="membership-deleted-revokes")
def _membership_deleted(sender, instance, **kwargs):
    access_changed(instance.user_id)


@receiver(pre_save, sender=Membership, dispatch_uid="membership-moved-revokes")
def _membership_moving(sender, instance, **kwargs):
    # A row given to another user (the admin's inline allows it) revokes the previous one.
    if instance.pk:
        before = Membership.objects.filter(pk=instance.pk).values_list("user_id", flat=True)
        for user_id in before:
            if user_id != instance.user_id:
                access_changed(user_id)


@receiver(post_save, sender=Membership, dispatch_uid="membership-saved-rechecks")
def _membership_saved(sender, instance, **kwargs):
    access_changed(instance.user_id)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="user-saved-rechecks")
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    # Staff or active status may have changed; a login only touches last_login.
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    access_changed(instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="user-deleted-closes")
def _user_deleted(sender, instance, **kwargs):
    access_changed(instance.pk)


@receiver(user_logged_out, dispatch_uid="user-signed-out-closes")
def _user_signed_out(sender, request, user, **kwargs):
    # The sockets opened with that session re-read it, find it gone and close.
    if user is not None:
        access_changed(user.pk)
