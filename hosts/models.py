from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from cloudpanel.projects.models import name_validator

from .uris import canonical_uri, transport_of, validate_uri

# Names of libvirt pools and networks the panel uses: libvirt itself refuses only "/", but a
# name that reads like an option or holds markup has no business in a panel's config.
libvirt_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z",
    "Letters, digits, '.', '_', '+' or '-', starting with a letter or digit.",
)


class Host(models.Model):
    """A libvirt hypervisor the panel manages."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"
        ERROR = "error", "Error"

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    uri = models.CharField(max_length=500, unique=True, validators=[validate_uri])
    transport = models.CharField(max_length=16, editable=False)
    # Encrypted at rest (cloudpanel.crypto); never serialized, never rendered.
    ssh_private_key_encrypted = models.TextField(blank=True, editable=False)
    console_address = models.CharField(max_length=255, blank=True)
    # Where new disks and image copies go, and what new instances' NICs join, on this host.
    default_pool = models.CharField(
        max_length=128, default="default", validators=[libvirt_name_validator]
    )
    default_network = models.CharField(
        max_length=128, default="default", validators=[libvirt_name_validator]
    )
    cpu_allocation_ratio = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("4.0"),
        validators=[MinValueValidator(Decimal("0.1"))],
    )
    ram_allocation_ratio = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("1.0"),
        validators=[MinValueValidator(Decimal("0.1"))],
    )
    disk_allocation_ratio = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("1.0"),
        validators=[MinValueValidator(Decimal("0.1"))],
    )
    enabled = models.BooleanField(default=True)
    maintenance = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.UNKNOWN, db_index=True
    )
    last_error = models.TextField(blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # Snapshots of what libvirt reported at the last sync (cloudpanel.virt dataclasses as dicts).
    capabilities = models.JSONField(default=dict, blank=True)
    storage_pools = models.JSONField(default=list, blank=True)
    networks = models.JSONField(default=list, blank=True)
    # Domains on the host that no instance knows, as the last reconcile found them.
    unmanaged_domains = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.transport = transport_of(self.uri)
        super().save(*args, **kwargs)

    def clean(self):
        # Store only the URI rebuilt from the validated fields, never the string as typed.
        try:
            self.uri = canonical_uri(self.uri)
        except ValidationError:
            pass  # already reported by the field's validator

    @property
    def has_ssh_key(self) -> bool:
        return bool(self.ssh_private_key_encrypted)

    @property
    def is_schedulable(self) -> bool:
        return self.enabled and not self.maintenance and self.status == self.Status.ONLINE

    @property
    def kvm(self) -> bool:
        return bool(self.capabilities.get("kvm"))

    @property
    def domain_type(self) -> str:
        """What guests are created as here: hardware-assisted where it really works."""
        return "kvm" if self.kvm else "qemu"


class HostEvent(models.Model):
    """A recorded health transition (online -> offline, ...)."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.host}: {self.from_status} -> {self.to_status}"


@receiver(post_delete, sender=Host)
def _remove_key_file(sender, instance, **kwargs):
    # However a host goes (service, admin, bulk delete), its decrypted SSH key goes with it.
    from .keys import remove_key

    remove_key(instance.pk)
