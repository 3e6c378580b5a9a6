"""The services called directly: any file-like object or iterable of chunks works."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from cloudpanel import errors
from images.catalogue import image_update
from images.intake import image_upload
from images.models import Image

from .conftest import store_files

pytestmark = pytest.mark.django_db


def test_upload_from_a_file_object(admin_user, qcow2_file):
    data = qcow2_file.read_bytes()
    image = image_upload(
        name="from-bytesio", disk_format="qcow2", fileobj=io.BytesIO(data), user=admin_user
    )
    assert image.status == "active" and image.sha256 == hashlib.sha256(data).hexdigest()
    assert [p.name for p in store_files()] == [image.file]


def test_upload_from_chunks(admin_user, raw_file):
    data = raw_file.read_bytes()
    chunks = (data[i : i + 100_000] for i in range(0, len(data), 100_000))
    image = image_upload(
        name="from-chunks",
        disk_format="raw",
        chunks=chunks,
        user=admin_user,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert image.file_size == len(data)


def test_chunks_over_the_limit(admin_user, settings):
    settings.IMAGE_MAX_FILE_SIZE = 1000
    with pytest.raises(ValidationError) as info:
        image_upload(
            name="big", disk_format="raw", chunks=iter([b"x" * 600, b"y" * 600]), user=admin_user
        )
    assert "file" in info.value.message_dict
    assert store_files() == [] and not Image.objects.exists()


def test_exactly_one_source(admin_user):
    with pytest.raises(ValueError):
        image_upload(name="x", disk_format="raw", user=admin_user)


def test_permission_checked_before_anything_is_written(member_user, project_b, qcow2_file):
    with pytest.raises(PermissionDenied):
        image_upload(
            name="x",
            disk_format="qcow2",
            fileobj=io.BytesIO(qcow2_file.read_bytes()),
            user=member_user,
            project=project_b,
            visibility="project",
        )
    assert store_files() == []


def test_update_refuses_file_facts(admin_user, default_project):
    image = Image.objects.create(name="x", disk_format="raw", project=default_project)
    with pytest.raises(ValidationError):
        image_update(image=image, user=admin_user, sha256="0" * 64)


def test_refusals_are_the_domains_errors(admin_user, member_user, default_project, test_host):
    """What the API's handler and the pages' page_message() map (cloudpanel/errors.py)."""
    from images.catalogue import image_delete
    from images.operations import MIRROR

    image = Image.objects.create(name="x", disk_format="raw", project=default_project)
    with pytest.raises(errors.InvalidInput):
        image_update(image=image, user=admin_user, sha256="0" * 64)
    with pytest.raises(errors.PermissionDenied):
        image_update(image=image, user=member_user, name="y")
    with pytest.raises(errors.InvalidInput):
        image_upload(name="y", disk_format="raw", chunks=iter([b"x"]), user=admin_user, sha256="x")
    with pytest.raises(errors.Conflict):
        MIRROR.start(target=image, host=test_host, user=admin_user)  # not active yet
    with pytest.raises(errors.PermissionDenied):
        image_delete(image=image, user=member_user)


def test_sweep_removes_only_stale_staged_files(settings):
    import os
    import time

    from images.store import incoming_dir, sweep_incoming

    stale = incoming_dir() / "upload-old.part"
    fresh = incoming_dir() / "upload-new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    assert sweep_incoming() == ["upload-old.part"]
    assert fresh.exists() and not stale.exists()
