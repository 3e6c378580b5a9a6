from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "cloudpanel.jobs"
    label = "jobs"

    def ready(self) -> None:
        from .events import on_job_changed
        from .signals import job_changed

        job_changed.connect(on_job_changed, dispatch_uid="jobs.events.broadcast")
