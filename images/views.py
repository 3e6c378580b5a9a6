"""Pages: the image list (with upload and URL import) and an image's detail page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from cloudpanel.errors import PAGE_ERRORS, page_message
from cloudpanel.forms import add_service_errors
from cloudpanel.projects.access import is_admin

from .catalogue import image_delete
from .distribution import distribution_job_active, distribution_plan, image_set_distribution
from .filters import ImageFilter
from .forms import ImageDistributionForm, ImageImportForm, ImageMirrorForm, ImageUploadForm
from .intake import image_upload
from .models import Image
from .operations import DISTRIBUTE, IMPORT, MIRROR
from .selectors import (
    image_get_for,
    image_job_list,
    image_list_for,
    image_manageable_by,
    image_replica_list,
    project_list_for_upload,
)
from .uploads import discard_incomplete_upload, install_image_upload_handler, upload_error

RECENT_JOBS = 10


def _wants_json(request) -> bool:
    return request.headers.get(
        "x-requested-with"
    ) == "XMLHttpRequest" or "application/json" in request.headers.get("accept", "")


def _list_context(request, **forms) -> dict:
    image_filter = ImageFilter(request.GET or None, queryset=image_list_for(request.user))
    can_add = is_admin(request.user) or project_list_for_upload(request.user).exists()
    return {
        "filter": image_filter,
        "images": image_filter.qs,
        "can_add": can_add,
        "upload_form": forms.get("upload_form") or ImageUploadForm(user=request.user),
        "import_form": forms.get("import_form") or ImageImportForm(user=request.user),
        "open_panel": forms.get("open_panel", ""),
    }


@login_required
def image_list(request):
    return render(request, "images/list.html", _list_context(request))


@login_required
@csrf_exempt
@require_POST
def image_upload_view(request):
    # The streaming handler must be in place before the CSRF check reads the body.
    install_image_upload_handler(request)
    try:
        return _image_upload(request)
    finally:
        discard_incomplete_upload(request)


@csrf_protect
def _image_upload(request):
    form = ImageUploadForm(request.POST, request.FILES, user=request.user)
    error = upload_error(request)
    if form.is_valid() and not error:
        try:
            image = image_upload(
                fileobj=form.cleaned_data["file"], user=request.user, **form.service_kwargs()
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PAGE_ERRORS as exc:
            form.add_error(None, page_message(exc))
        else:
            url = reverse("images:detail", args=[image.id])
            if _wants_json(request):
                return JsonResponse(
                    {"id": image.id, "url": url, "sha256": image.sha256}, status=201
                )
            messages.success(request, f"Image {image.name} uploaded and verified.")
            return redirect(url)
    elif error:
        form.errors.pop("file", None)
        form.add_error("file", error)
    if _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    context = _list_context(request, upload_form=form, open_panel="upload")
    return render(request, "images/list.html", context, status=400)


@login_required
@require_POST
def image_import_view(request):
    form = ImageImportForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            job = IMPORT.start(
                url=form.cleaned_data["url"], user=request.user, **form.service_kwargs()
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PAGE_ERRORS as exc:
            form.add_error(None, page_message(exc))
        else:
            messages.success(request, f"Import of {job.target_name} started (job {job.id}).")
            return redirect("images:detail", job.target_id)
    context = _list_context(request, import_form=form, open_panel="import")
    return render(request, "images/list.html", context, status=400)


@login_required
def image_detail(request, pk: int):
    image = image_get_for(request.user, pk)
    admin = is_admin(request.user)
    context = {
        "image": image,
        "is_admin": admin,
        "can_manage": image_manageable_by(request.user, image),
        "jobs": list(image_job_list(image)[:RECENT_JOBS]),
        "replicas": list(image_replica_list(image)) if admin else [],
        "mirror_form": ImageMirrorForm() if admin else None,
    }
    if admin:
        context["distribution_form"] = ImageDistributionForm(
            initial={
                "distribution": image.distribution,
                "hosts": list(image.distribution_hosts.all()),
            }
        )
        context["distribution_plan"] = distribution_plan(image)
        context["distribution_job"] = distribution_job_active(image)
    return render(request, "images/detail.html", context)


@login_required
@require_POST
def image_mirror_view(request, pk: int):
    image = image_get_for(request.user, pk)
    form = ImageMirrorForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a host and a storage pool.")
        return redirect("images:detail", image.id)
    try:
        job = MIRROR.start(
            target=image,
            host=form.cleaned_data["host"],
            pool=form.cleaned_data["pool"] or None,  # empty: the host's default pool
            user=request.user,
        )
    except PAGE_ERRORS as exc:
        messages.error(request, page_message(exc))
    else:
        messages.success(
            request, f"Copy to {form.cleaned_data['host'].name} started (job {job.id})."
        )
    return redirect("images:detail", image.id)


@login_required
@require_POST
def image_delete_view(request, pk: int):
    image = image_get_for(request.user, pk)
    try:
        problems = image_delete(image=image, user=request.user)
    except PAGE_ERRORS as exc:
        messages.error(request, page_message(exc))
        return redirect("images:detail", image.id)
    messages.success(request, f"Image {image.name} deleted.")
    for problem in problems:
        messages.warning(request, f"Copy left on a host: {problem}")
    return redirect("images:list")


@login_required
@require_POST
def image_distribution_view(request, pk: int):
    """Set the image's distribution policy; with `distribute`, also start copying now."""
    image = image_get_for(request.user, pk)
    form = ImageDistributionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose where copies are kept.")
        return redirect("images:detail", image.id)
    distribution = form.cleaned_data["distribution"]
    hosts = form.cleaned_data["hosts"] if distribution == Image.Distribution.HOSTS else []
    try:
        image = image_set_distribution(
            user=request.user, image=image, distribution=distribution, hosts=hosts
        )
    except PAGE_ERRORS as exc:
        messages.error(request, page_message(exc))
        return redirect("images:detail", image.id)
    messages.success(request, f"Copies of {image.name}: {image.get_distribution_display()}.")
    if "distribute" in request.POST and distribution != Image.Distribution.NONE:
        _start_distribution(request, image)
    return redirect("images:detail", image.id)


@login_required
@require_POST
def image_distribute_view(request, pk: int):
    image = image_get_for(request.user, pk)
    _start_distribution(request, image)
    return redirect("images:detail", image.id)


def _start_distribution(request, image) -> None:
    try:
        job = DISTRIBUTE.start(user=request.user, target=image)
    except PAGE_ERRORS as exc:
        messages.error(request, page_message(exc))
    else:
        messages.success(request, f"Distribution of {image.name} started (job {job.id}).")
