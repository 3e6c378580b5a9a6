from django import forms

from cloudpanel.projects.access import is_admin
from hosts.models import Host

from .fetch import MAX_URL_LENGTH, RefusedURL, parse_url
from .models import Image, default_user_validator
from .selectors import project_list_for_upload


class _ImageMetaForm(forms.Form):
    id_prefix = "image"
    name = forms.CharField(max_length=63)
    disk_format = forms.ChoiceField(label="Format", choices=Image.Format.choices)
    # The choice fields are optional so a post without them (a script) gets the defaults; the
    # page's selects always send one.
    os_type = forms.ChoiceField(
        label="OS family",
        choices=Image.OSFamily.choices,
        initial=Image.OSFamily.LINUX,
        required=False,
    )
    min_disk_gib = forms.IntegerField(label="Min. disk (GiB)", min_value=0, required=False)
    min_ram_mib = forms.IntegerField(label="Min. RAM (MiB)", min_value=0, required=False)
    cloud_init = forms.BooleanField(
        label="Runs cloud-init", required=False, help_text="Instances get a NoCloud seed."
    )
    default_user = forms.CharField(
        label="Default user",
        max_length=32,
        required=False,
        validators=[default_user_validator],
        help_text="Gets the instance's keys and password, e.g. debian.",
    )
    firmware = forms.ChoiceField(
        choices=Image.Firmware.choices, initial=Image.Firmware.BIOS, required=False
    )
    disk_bus = forms.ChoiceField(
        label="Disk bus",
        choices=Image.DiskBus.choices,
        initial=Image.DiskBus.VIRTIO,
        required=False,
    )
    visibility = forms.ChoiceField(choices=Image.Visibility.choices)
    project = forms.ModelChoiceField(queryset=None, required=False)
    sha256 = forms.CharField(
        label="sha256 (optional)",
        max_length=64,
        required=False,
        help_text="When given, the file must have this checksum.",
    )

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("auto_id", f"{self.id_prefix}_%s")  # two forms share one page
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = project_list_for_upload(user)
        if not is_admin(user):
            self.fields["visibility"].choices = [
                c for c in Image.Visibility.choices if c[0] == Image.Visibility.PROJECT
            ]
            self.fields["visibility"].initial = Image.Visibility.PROJECT

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "disk_format": data["disk_format"],
            "os_type": data.get("os_type") or "linux",
            "min_disk_gib": data.get("min_disk_gib") or 0,
            "min_ram_mib": data.get("min_ram_mib") or 0,
            "cloud_init": data.get("cloud_init", False),
            "default_user": data.get("default_user", ""),
            "firmware": data.get("firmware") or Image.Firmware.BIOS,
            "disk_bus": data.get("disk_bus") or Image.DiskBus.VIRTIO,
            "visibility": data["visibility"],
            "project": data.get("project"),
            "sha256": data.get("sha256") or None,
        }


class ImageUploadForm(_ImageMetaForm):
    id_prefix = "upload"
    file = forms.FileField(allow_empty_file=False)


class ImageImportForm(_ImageMetaForm):
    id_prefix = "import"
    # Not a URLField: it rewrites the URL with another parser. The download's own strict
    # parser checks it, and the text is kept as typed (no stripping).
    url = forms.CharField(
        label="URL", max_length=MAX_URL_LENGTH, strip=False, widget=forms.URLInput
    )

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            parse_url(url)
        except RefusedURL as exc:
            raise forms.ValidationError(str(exc)) from None
        return url


class ImageMirrorForm(forms.Form):
    host = forms.ModelChoiceField(queryset=Host.objects.order_by("name"))
    pool = forms.CharField(
        max_length=128, required=False, help_text="Leave empty for the host's default pool."
    )


class ImageDistributionForm(forms.Form):
    """Where copies of the image are kept ahead of need (administrators)."""

    distribution = forms.ChoiceField(
        choices=Image.Distribution.choices, widget=forms.RadioSelect, label="Keep copies"
    )
    hosts = forms.ModelMultipleChoiceField(
        queryset=Host.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="With 'On chosen hosts'.",
    )
