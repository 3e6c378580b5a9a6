from django import forms

from images.models import Image
from instances.keypairs import keypairs_for
from instances.models import Flavor, KeyPair


def images_for_project(project):
    """The images a project may boot: the public ones and its own."""
    active = Image.objects.filter(status=Image.Status.ACTIVE)
    return (
        active.filter(visibility=Image.Visibility.PUBLIC) | active.filter(project=project)
    ).order_by("name")


class PortalCreateForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Letters, digits, '.', '-' or '_'.")
    image = forms.ModelChoiceField(queryset=Image.objects.none(), empty_label=None)
    flavor = forms.ModelChoiceField(queryset=Flavor.objects.all(), empty_label=None)
    keypairs = forms.ModelMultipleChoiceField(
        queryset=KeyPair.objects.none(),
        required=False,
        label="SSH keys",
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, user, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].queryset = images_for_project(project)
        self.fields["keypairs"].queryset = keypairs_for(user).order_by("name", "id")
        self.fields["name"].widget.attrs.update(autocomplete="off", autocapitalize="none")


class NameForm(forms.Form):
    name = forms.CharField(max_length=63, required=False)
    description = forms.CharField(max_length=255, required=False)
