"""One permission class per rule: who may read and write each API collection."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

COLLECTIONS = ["/api/v1/flavors/", "/api/v1/projects/", "/api/v1/hosts/", "/api/v1/instances/",
               "/api/v1/images/", "/api/v1/jobs/"]  # fmt: skip


@pytest.mark.parametrize("url", COLLECTIONS)
def test_anonymous_callers_read_nothing(url):
    assert APIClient().get(url).status_code in (401, 403)


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/flavors/", {"name": "f1", "vcpus": 1, "ram_mib": 64, "disk_gib": 1}),
        ("/api/v1/projects/", {"name": "p1"}),
    ],
)
def test_signed_in_users_read_and_only_admins_write(url, body, member_user, admin_user):
    member, admin = APIClient(), APIClient()
    member.force_authenticate(member_user)
    admin.force_authenticate(admin_user)
    assert member.get(url).status_code == 200
    assert member.post(url, body, format="json").status_code == 403
    assert admin.post(url, body, format="json").status_code == 201


def test_hosts_are_for_admins_only_even_to_read(member_user, admin_user):
    member, admin = APIClient(), APIClient()
    member.force_authenticate(member_user)
    admin.force_authenticate(admin_user)
    assert member.get("/api/v1/hosts/").status_code == 403
    assert admin.get("/api/v1/hosts/").status_code == 200
