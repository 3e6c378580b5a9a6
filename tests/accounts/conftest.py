import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from cloudpanel.accounts.tokens import issue_token
from cloudpanel.projects.models import Membership, Project


@pytest.fixture(autouse=True)
def _fresh_rates():
    cache.clear()  # DRF's throttles count in the cache
    yield
    cache.clear()


def bearer(secret: str, scheme: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    return client


@pytest.fixture
def two_projects(member_user):
    """alice is a member of `alpha` and `beta`; `gamma` is someone else's."""
    alpha = Project.objects.create(name="alpha")
    beta = Project.objects.create(name="beta")
    gamma = Project.objects.create(name="gamma")
    for project in (alpha, beta):
        Membership.objects.create(user=member_user, project=project, role="member")
    return alpha, beta, gamma


@pytest.fixture
def alice_token(member_user):
    return issue_token(member_user, name="script")
