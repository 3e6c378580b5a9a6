from django import forms

from cloudpanel.projects import access
from cloudpanel.projects.models import Project
from hosts.models import Host
from images.models import Image

from .keypairs import keypairs_for
from .models import Flavor, KeyPair


class InstanceCreateForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Letters, digits, '.', '-' or '_'.")
    image = forms.ModelChoiceField(queryset=Image.objects.none())
    flavor = forms.ModelChoiceField(queryset=Flavor.objects.all())
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        help_text="Empty: your only project (admins: the default project).",
    )
    host = forms.ModelChoiceField(
        queryset=Host.objects.none(),
        required=False,
        help_text="Empty: the scheduler picks the host with most free RAM.",
    )
    # The guest's identity, handed over by cloud-init (checked by the Create operation).
    keypairs = forms.ModelMultipleChoiceField(
        queryset=KeyPair.objects.none(),
        required=False,
        label="Key pairs",
        help_text="SSH keys for the image's default user.",
    )
    hostname = forms.CharField(
        max_length=63, required=False, help_text="Empty: made from the instance name."
    )
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="For the image's default user; stored only as a hash.",
    )
    user_data = forms.CharField(
        required=False,
        strip=False,
        label="User data",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="A #cloud-config or a script, at most 64 KiB.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        images = Image.objects.filter(status=Image.Status.ACTIVE)
        ids = access.visible_project_ids(user)
        if ids is not None:
            images = images.filter(visibility=Image.Visibility.PUBLIC) | images.filter(
                project_id__in=ids
            )
        self.fields["image"].queryset = images.order_by("name")
        self.fields["keypairs"].queryset = keypairs_for(user).order_by("name", "id")
        projects = Project.objects.all()
        self.fields["project"].queryset = projects if ids is None else projects.filter(id__in=ids)
        if access.is_admin(user):
            self.fields["host"].queryset = Host.objects.filter(enabled=True).order_by("name")
        else:
            del self.fields["host"]


class ShutdownForm(forms.Form):
    force_after = forms.IntegerField(required=False, min_value=0, max_value=3600)


class ResizeForm(forms.Form):
    flavor = forms.ModelChoiceField(queryset=Flavor.objects.all())


class SnapshotForm(forms.Form):
    name = forms.CharField(max_length=63)
    description = forms.CharField(max_length=255, required=False)


class FlavorForm(forms.Form):
    name = forms.CharField(max_length=63)
    vcpus = forms.IntegerField(min_value=1, max_value=256, label="vCPUs")
    ram_mib = forms.IntegerField(min_value=16, label="RAM (MiB)")
    disk_gib = forms.IntegerField(min_value=1, label="Disk (GiB)")


class KeyPairForm(forms.Form):
    name = forms.CharField(max_length=63)
    public_key = forms.CharField(
        strip=False,
        label="Public key",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One line from a .pub file: ssh-ed25519, ecdsa-sha2-nistp256/384/521 "
        "or ssh-rsa (2048 bits or more).",
    )
