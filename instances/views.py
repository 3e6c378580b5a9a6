"""Pages: instance list, create, detail with actions and job history; flavors for admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from cloudpanel.errors import PAGE_ERRORS, page_message
from cloudpanel.forms import add_service_errors
from cloudpanel.pages import attempt, staff_required
from cloudpanel.projects import access
from hosts.models import Host

from . import guest, keypairs, operations, selectors, services
from .forms import (
    FlavorForm,
    InstanceCreateForm,
    KeyPairForm,
    ResizeForm,
    ShutdownForm,
    SnapshotForm,
)
from .models import Flavor, Instance, Snapshot


def _instance(request, pk):
    return get_object_or_404(selectors.instance_detail_for(request.user), pk=pk)


@login_required
def instance_list(request):
    instances = selectors.instance_detail_for(request.user).order_by("name", "id")
    state = request.GET.get("state")
    if state:
        instances = instances.filter(state=state)
    return render(request, "instances/list.html", {"instances": instances, "state": state})


@login_required
def instance_create(request):
    form = InstanceCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = operations.CREATE.start(
                user=request.user,
                name=data["name"],
                image=data["image"],
                flavor=data["flavor"],
                project=data.get("project"),
                host=data.get("host"),
                keypairs=[k.pk for k in data.get("keypairs") or []],
                user_data=data.get("user_data"),
                hostname=data.get("hostname"),
                password=data.get("password"),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PAGE_ERRORS as exc:
            form.add_error(None, page_message(exc))
        else:
            messages.success(request, f"Creating instance {job.target_name} (job {job.id}).")
            return redirect("instances:detail", job.target_id)
    return render(request, "instances/form.html", {"form": form})


@login_required
def instance_detail(request, pk: int):
    instance = _instance(request, pk)
    return render(
        request,
        "instances/detail.html",
        {
            "instance": instance,
            "jobs": selectors.instance_job_list(instance)[:50],
            "snapshots": instance.snapshots.all(),
            "can_act": access.can_act(request.user, instance.project),
            "resize_form": ResizeForm(),
            "snapshot_form": SnapshotForm(),
            # Bounded agent calls; a guest without agent reads as 'unavailable', not an error.
            "guest": guest.instance_guest_info(user=request.user, instance=instance),
            # Only the power actions the instance's state allows (the operations' own rule).
            "actions": [a for a, op in operations.POWER.items() if op.offered_for(instance)],
            **_continuity_context(request, instance),
        },
    )


def _continuity_context(request, instance) -> dict:
    from . import backup_views, migration_views, mirror_views, recovery_views

    context = {}
    for part in (migration_views, mirror_views, backup_views, recovery_views):
        context.update(part.detail_context(request, instance))
    return context


@login_required
@require_POST
def instance_action(request, pk: int, action: str):
    instance = _instance(request, pk)
    operation = operations.POWER.get(action)
    if operation is None:
        raise Http404("unknown action")
    params = {}
    if action == "shutdown":
        form = ShutdownForm(request.POST)
        if form.is_valid() and form.cleaned_data.get("force_after") is not None:
            params["force_after"] = form.cleaned_data["force_after"]
    attempt(
        request,
        operation.start,
        f"{action.capitalize()} requested.",
        user=request.user,
        target=instance,
        **params,
    )
    return redirect("instances:detail", pk)


@login_required
@require_POST
def instance_password(request, pk: int):
    """Set a guest user's password through the guest agent (never stored, never logged)."""
    instance = _instance(request, pk)
    username = request.POST.get("user", "")
    attempt(
        request,
        guest.instance_set_password,
        f"Password of {username.strip()} set in the guest.",
        user=request.user,
        instance=instance,
        username=username,
        password=request.POST.get("password", ""),
    )
    return redirect("instances:detail", pk)


@login_required
@require_POST
def instance_resize(request, pk: int):
    instance = _instance(request, pk)
    form = ResizeForm(request.POST)
    if form.is_valid():
        attempt(
            request,
            operations.RESIZE.start,
            "Resize requested.",
            user=request.user,
            target=instance,
            flavor=form.cleaned_data["flavor"],
        )
    else:
        messages.error(request, "Choose a flavor.")
    return redirect("instances:detail", pk)


@login_required
@require_POST
def instance_delete(request, pk: int):
    instance = _instance(request, pk)
    if attempt(
        request,
        operations.DELETE.start,
        f"Deleting {instance.name}.",
        user=request.user,
        target=instance,
    ):
        return redirect("instances:list")
    return redirect("instances:detail", pk)


@staff_required
@require_POST
def instance_forget(request, pk: int):
    instance = _instance(request, pk)
    forgotten = f"{instance.name} forgotten; nothing on its host was touched."
    attempt(request, services.instance_forget, forgotten, user=request.user, instance=instance)
    if Instance.objects.filter(pk=pk).exists():  # refused: the message says why
        return redirect("instances:detail", pk)
    return redirect("instances:list")


@login_required
@require_POST
def snapshot_create(request, pk: int):
    instance = _instance(request, pk)
    form = SnapshotForm(request.POST)
    if form.is_valid():
        attempt(
            request,
            operations.TAKE_SNAPSHOT.start,
            "Snapshot requested.",
            user=request.user,
            target=instance,
            name=form.cleaned_data["name"],
            description=form.cleaned_data.get("description", ""),
            quiesce=request.POST.get("quiesce") == "on",
        )
    else:
        messages.error(request, "A snapshot needs a name.")
    return redirect("instances:detail", pk)


@login_required
@require_POST
def snapshot_revert(request, pk: int, sid: int):
    snapshot = get_object_or_404(Snapshot, pk=sid, instance=_instance(request, pk))
    attempt(
        request,
        operations.REVERT_SNAPSHOT.start,
        f"Reverting to {snapshot.name}.",
        user=request.user,
        target=snapshot.instance,
        snapshot=snapshot,
    )
    return redirect("instances:detail", pk)


@login_required
@require_POST
def snapshot_delete(request, pk: int, sid: int):
    snapshot = get_object_or_404(Snapshot, pk=sid, instance=_instance(request, pk))
    attempt(
        request,
        operations.DELETE_SNAPSHOT.start,
        f"Deleting snapshot {snapshot.name}.",
        user=request.user,
        target=snapshot.instance,
        snapshot=snapshot,
    )
    return redirect("instances:detail", pk)


@staff_required
def flavor_list(request):
    form = FlavorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            flavor = services.flavor_create(**form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Flavor {flavor.name} created.")
            return redirect("instances:flavors")
    context = {"flavors": selectors.flavor_list(), "form": form}
    return render(request, "instances/flavors.html", context)


@staff_required
@require_POST
def flavor_delete(request, pk: int):
    flavor = get_object_or_404(Flavor, pk=pk)
    attempt(request, services.flavor_delete, f"Flavor {flavor.name} deleted.", flavor=flavor)
    return redirect("instances:flavors")


@staff_required
@require_POST
def instance_adopt(request):
    """Adopt a domain listed as unmanaged on a host's page."""
    host = get_object_or_404(Host, pk=request.POST.get("host"))
    domain = request.POST.get("domain", "")
    instance = attempt(
        request,
        services.instance_adopt,
        f"Domain {domain} is now managed.",
        user=request.user,
        host=host,
        domain_name=domain,
    )
    if instance is None:
        return redirect("hosts:detail", pk=host.pk)
    # Off the host's unmanaged list at once, not only at the next reconcile.
    host.unmanaged_domains = [d for d in host.unmanaged_domains if d.get("name") != domain]
    host.save(update_fields=["unmanaged_domains"])
    return redirect("instances:detail", pk=instance.pk)


@login_required
def keypair_list(request):
    """The user's SSH key pairs (admins: everyone's), and a form to import one."""
    form = KeyPairForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            keypair = keypairs.keypair_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Key pair {keypair.name} imported ({keypair.fingerprint}).")
            return redirect("instances:keypairs")
    context = {
        "keypairs": keypairs.keypairs_for(request.user),
        "form": form,
        "show_owner": access.is_admin(request.user),
    }
    return render(request, "instances/keypairs.html", context)


@login_required
@require_POST
def keypair_delete(request, pk: int):
    keypair = get_object_or_404(keypairs.keypairs_for(request.user), pk=pk)
    attempt(
        request,
        keypairs.keypair_delete,
        f"Key pair {keypair.name} deleted.",
        user=request.user,
        keypair=keypair,
    )
    return redirect("instances:keypairs")
