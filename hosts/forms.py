from decimal import Decimal

from django import forms


class SecretTextarea(forms.Textarea):
    """A textarea that never echoes its value back, not even after a failed submit."""

    def format_value(self, value):
        return None


def _ratio(label: str, default: str, help_text: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        max_digits=6,
        decimal_places=2,
        min_value=Decimal("0.1"),
        initial=Decimal(default),
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "0.1"}),
    )


class HostForm(forms.Form):
    """Fields only: the rules (URI, uniqueness, reachability) live in hosts.services."""

    name = forms.CharField(max_length=63, help_text="Letters, digits, '.', '-' or '_'.")
    uri = forms.CharField(
        label="libvirt URI",
        max_length=500,
        help_text="qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, "
        "qemu+tcp://host:16509/system, qemu+unix:///system?socket=PATH or test:///default. "
        "Parameters that name programs or files (command, netcat, keyfile, ...) are refused.",
        widget=forms.TextInput(attrs={"placeholder": "qemu+ssh://root@kvm1.example/system"}),
    )
    console_address = forms.CharField(
        required=False,
        max_length=255,
        help_text="Where browsers' consoles reach the host's VNC servers. "
        "Defaults to the URI's host name.",
    )
    default_pool = forms.CharField(
        required=False,
        max_length=128,
        initial="default",
        help_text="The libvirt storage pool that holds new disks and image copies.",
    )
    default_network = forms.CharField(
        required=False,
        max_length=128,
        initial="default",
        help_text="The libvirt network new instances join (a user-mode NIC if it is not "
        "active).",
    )
    ssh_private_key = forms.CharField(
        label="SSH private key",
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"rows": 5, "autocomplete": "off", "spellcheck": "false"}),
        help_text="For qemu+ssh hosts. Stored encrypted, never shown again.",
    )
    cpu_allocation_ratio = _ratio("vCPU ratio", "4.0", "vCPUs per physical CPU thread.")
    ram_allocation_ratio = _ratio("RAM ratio", "1.0", "Above 1.0 counts on KSM and ballooning.")
    disk_allocation_ratio = _ratio("Disk ratio", "1.0", "Thin provisioning headroom.")
