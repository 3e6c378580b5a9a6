from celery import shared_task

from . import services


@shared_task(bind=True, name="jobs.run_job")
def run_job(self, job_id: int) -> None:
    services.job_execute(job_id, task_id=self.request.id or "")


@shared_task(name="jobs.reap_stale_jobs")
def reap_stale_jobs() -> list[int]:
    return services.job_reap_stale()
