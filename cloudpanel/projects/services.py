from .models import DEFAULT_PROJECT_NAME, Project


def project_get_default() -> Project:
    """The project that API calls use when they name none (created on first use)."""
    project, _ = Project.objects.get_or_create(
        name=DEFAULT_PROJECT_NAME, defaults={"description": "Default project"}
    )
    return project
