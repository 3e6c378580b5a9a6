"""What every instance operation shares: the job bookkeeping, the state checks, waiting on
libvirt (who may act and the host check are instances/rules.py, shared with the services).

An instance operation's `run` loads the instance, calls `act`, and always ends by reading
the instance's state back from libvirt and clearing `current_job`, whatever `act` did.
"""

from __future__ import annotations

from typing import ClassVar

from django.utils import timezone

from cloudpanel.errors import Conflict
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import Operation
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.virt.waiter import Waited, wait_for_state
from hosts.connection import connection_uri

from ..models import Instance
from ..rules import GONE
from ..services import instance_sync_state
from ..signals import instance_changed


def uri_of(instance: Instance) -> str:
    if instance.host is None:
        raise JobFailed(f"Instance {instance.name} has no host", public=True)
    return connection_uri(instance.host)


def wait_for(ctx: JobContext, uri: str, name: str, states: set[str], timeout: float) -> Waited:
    """Wait until the domain is in `states`, woken by its libvirt lifecycle events (a slow
    poll behind them); false after `timeout`. A cancelled job stops waiting."""
    return wait_for_state(uri, name, states, timeout, check=ctx.check_cancelled)


class RolledBack(JobFailed):
    """The operation failed and undid itself: the instance already shows why."""


class InstanceOperation(Operation):
    """An operation on one instance. Subclasses set `kind` and write `check` and `act`."""

    target_type: ClassVar[str] = Job.TargetType.INSTANCE

    def target_name(self, target: Instance) -> str:
        return target.name

    def on_job_created(self, target: Instance, job: Job) -> None:
        Instance.objects.filter(pk=target.pk).update(current_job=job)
        target.current_job = job

    def check_busy_or_state(self, instance: Instance, allowed, verb: str) -> None:
        """Refuse unless the instance is in one of `allowed` states. An instance busy with
        a job passes: the job conflict (409 naming the running job) says more."""
        if instance.current_job_id is not None:
            return
        if instance.state in GONE or instance.state == Instance.State.BUILDING:
            raise Conflict(f"Instance {instance.name} is {instance.state}; it cannot {verb}.")
        if instance.state not in allowed:
            raise Conflict(
                f"Instance {instance.name} is {instance.get_state_display().lower()}; "
                f"it cannot {verb} now."
            )

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict | None:
        raise NotImplementedError

    @staticmethod
    def load_instance(job: Job) -> Instance:
        """The job's instance, or the job fails saying it is gone."""
        try:
            return Instance.objects.select_related("host", "flavor", "image").get(
                pk=job.target_id
            )
        except Instance.DoesNotExist:
            what = job.target_name or job.target_id
            raise JobFailed(f"Instance {what} no longer exists", public=True) from None

    def run(self, job: Job, ctx: JobContext) -> dict | None:
        instance = self.load_instance(job)
        try:
            result = self.act(job, ctx, instance)
        except Exception as exc:
            if not Instance.objects.filter(pk=instance.pk).exists():
                raise
            if isinstance(exc, RolledBack):
                self._release(instance, job)
            else:
                self._finish(instance, job, reason=f"{self.kind} failed: {exc}")
            raise
        known = self.known_state(result)
        if known is not None:
            self._settle(instance, job, known)  # a row deleted meanwhile updates nothing
        elif Instance.objects.filter(pk=instance.pk).exists():
            self._finish(instance, job, reason="")
        return result

    def known_state(self, result: dict | None) -> str | None:
        """The state `act` has just read from libvirt, recorded as is at the end instead of
        reading the domain back; None (the default) reads it back."""
        return None

    def on_abandoned(self, job: Job) -> None:
        """Cancelled before it ran: nothing changed. A dead worker's job: the instance's
        state is unknown, so it goes to error (its volume rows stay, for delete)."""
        never_ran = job.status == Job.Status.CANCELLED and job.started_at is None
        if not never_ran or self.leaves_error_when_never_run:
            reason = f"Job {job.id} ({job.kind}) was abandoned: {job.error}"
            Instance.objects.filter(pk=job.target_id).update(
                state=Instance.State.ERROR, state_reason=reason
            )
        Instance.objects.filter(pk=job.target_id, current_job_id=job.id).update(current_job=None)

    # An instance whose create never ran has nothing on a host: it can only be deleted.
    leaves_error_when_never_run: ClassVar[bool] = False

    @staticmethod
    def _release(instance: Instance, job: Job) -> None:
        Instance.objects.filter(pk=instance.pk, current_job_id=job.id).update(current_job=None)

    @staticmethod
    def _settle(instance: Instance, job: Job, state: str) -> None:
        """Record the state and release the job in one write, then tell the pages."""
        instance.state, instance.state_reason = state, ""
        fields = {"state": state, "state_reason": "", "updated_at": timezone.now()}
        if instance.mac_address:
            fields["mac_address"] = instance.mac_address
        released = Instance.objects.filter(pk=instance.pk, current_job_id=job.id).update(
            current_job=None, **fields
        )
        if released:
            instance.current_job = None
        elif not Instance.objects.filter(pk=instance.pk).update(**fields):
            return  # deleted meanwhile: nothing to tell
        instance_changed.send(sender=Instance, instance=instance)

    def _finish(self, instance: Instance, job: Job, *, reason: str | None) -> None:
        try:
            instance_sync_state(instance=instance, reason=reason)
        finally:
            self._release(instance, job)
