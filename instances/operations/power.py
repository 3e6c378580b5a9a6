"""Power: start, shutdown (ACPI, optionally forced after a delay), stop, reboot, reset,
suspend and resume. Steps and failures here name no host: tenants read them as they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from cloudpanel.errors import InvalidInput
from cloudpanel.jobs.models import Job
from cloudpanel.jobs.operations import register
from cloudpanel.jobs.services import JobContext, JobFailed
from cloudpanel.virt import AgentUnavailable, agent, domains

from ..models import Instance
from ..rules import require_act, require_host_online
from .base import InstanceOperation, uri_of, wait_for
from .mirror import mirrors_keep_before_poweroff

START_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 120.0
AGENT_SHUTDOWN_WAIT = 60.0  # after ACPI was ignored, how long the agent's shutdown may take
MAX_FORCE_AFTER = 3600


class PowerOperation(InstanceOperation):
    action: ClassVar[str]
    # The states the action makes sense in (the page offers it only there).
    allowed_states: ClassVar[frozenset[str]]

    def check(self, *, user, target: Instance, **params) -> dict:
        require_act(user, target)
        job_params = self.check_params(params)
        self.check_busy_or_state(target, self.allowed_states, self.action)
        require_host_online(target, user)
        return job_params

    def check_params(self, params: dict) -> dict:
        return {}

    def offered_for(self, instance: Instance) -> bool:
        return instance.state in self.allowed_states


class SimplePower(PowerOperation):
    """One libvirt call; with `until`, then wait up to 30 s for that state."""

    operation: ClassVar[Callable[[str, str], None]]
    step: ClassVar[str]
    until: ClassVar[str | None] = None
    failure: ClassVar[str] = ""

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        ctx.progress(20, self.step, public=True)
        type(self).operation(uri, instance.domain_name)
        if self.until is None:
            return {"state": domains.domain_state(uri, instance.domain_name)}
        if not wait_for(ctx, uri, instance.domain_name, {self.until}, 30):
            raise JobFailed(self.failure, public=True)
        return {"state": self.until}


class Start(PowerOperation):
    kind = "instance.start"
    action = "start"
    allowed_states = frozenset({"shutoff", "crashed", "nostate", "error"})

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        state = domains.domain_state(uri, instance.domain_name)
        if state == "paused":
            raise JobFailed("The instance is paused; resume it instead", public=True)
        if state != "running":
            ctx.progress(20, "Starting the domain", public=True)
            domains.start_domain(uri, instance.domain_name)
        if not wait_for(ctx, uri, instance.domain_name, {"running"}, START_TIMEOUT):
            raise JobFailed(
                f"The domain did not reach running within {START_TIMEOUT:g} s", public=True
            )
        return {"state": "running"}


class Shutdown(PowerOperation):
    kind = "instance.shutdown"
    action = "shutdown"
    allowed_states = frozenset({"running", "paused"})

    def check_params(self, params: dict) -> dict:
        force_after = params.get("force_after")
        if force_after in (None, ""):
            return {}
        try:
            force_after = int(force_after)
        except (TypeError, ValueError):
            raise InvalidInput({"force_after": ["A whole number of seconds."]}) from None
        if not 0 <= force_after <= MAX_FORCE_AFTER:
            raise InvalidInput({"force_after": [f"Between 0 and {MAX_FORCE_AFTER}."]})
        return {"force_after": force_after}

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        uri = uri_of(instance)
        if domains.domain_state(uri, instance.domain_name) == "shutoff":
            return {"state": "shutoff"}
        force_after = job.params.get("force_after")
        timeout = float(force_after) if force_after is not None else SHUTDOWN_TIMEOUT
        mirrors_keep_before_poweroff(ctx, instance, uri)
        ctx.progress(10, "Asking the guest to shut down (ACPI)", public=True)
        domains.shutdown_domain(uri, instance.domain_name)
        if wait_for(ctx, uri, instance.domain_name, {"shutoff"}, timeout):
            return {"state": "shutoff", "forced": False}
        # The guest ignored the power button: ask its agent once before giving up or forcing.
        if self._agent_shutdown(ctx, uri, instance, timeout):
            return {"state": "shutoff", "forced": False, "agent": True}
        if force_after is None:
            raise JobFailed(
                f"The guest did not shut down within {timeout:g} s; stop it to power it off",
                public=True,
            )
        ctx.progress(70, f"No shutdown after {timeout:g} s: powering off", public=True)
        domains.destroy_domain(uri, instance.domain_name)
        if not wait_for(ctx, uri, instance.domain_name, {"shutoff"}, 30):
            raise JobFailed("The domain did not power off", public=True)
        return {"state": "shutoff", "forced": True}

    @staticmethod
    def _agent_shutdown(ctx: JobContext, uri: str, instance: Instance, timeout: float) -> bool:
        """Shut down through the guest agent; False when none answers or it did not help."""
        try:
            agent.agent_shutdown(uri, instance.domain_name)
        except AgentUnavailable as exc:
            ctx.log(f"No shutdown through the guest agent: {exc}", public=True)
            return False
        ctx.progress(50, "No ACPI shutdown: asked the guest agent to shut down", public=True)
        return wait_for(
            ctx, uri, instance.domain_name, {"shutoff"}, min(timeout, AGENT_SHUTDOWN_WAIT)
        )


class Stop(SimplePower):
    kind = "instance.stop"
    action = "stop"
    allowed_states = frozenset({"running", "paused", "crashed", "pmsuspended", "error", "nostate"})
    operation = staticmethod(domains.destroy_domain)
    step = "Powering off"
    until = "shutoff"
    failure = "The domain did not power off"

    def act(self, job: Job, ctx: JobContext, instance: Instance) -> dict:
        mirrors_keep_before_poweroff(ctx, instance, uri_of(instance))
        return super().act(job, ctx, instance)


class Reboot(SimplePower):
    kind = "instance.reboot"
    action = "reboot"
    allowed_states = frozenset({"running"})
    operation = staticmethod(domains.reboot_domain)
    step = "Asking the guest to reboot (ACPI)"


class Reset(SimplePower):
    kind = "instance.reset"
    action = "reset"
    allowed_states = frozenset({"running"})
    operation = staticmethod(domains.reset_domain)
    step = "Resetting"


class Suspend(SimplePower):
    kind = "instance.suspend"
    action = "suspend"
    allowed_states = frozenset({"running"})
    operation = staticmethod(domains.suspend_domain)
    step = "Pausing"
    until = "paused"
    failure = "The domain did not pause"


class Resume(SimplePower):
    kind = "instance.resume"
    action = "resume"
    allowed_states = frozenset({"paused"})
    operation = staticmethod(domains.resume_domain)
    step = "Resuming"
    until = "running"
    failure = "The domain did not resume"


# The power actions by name, in the order pages show them.
POWER: dict[str, PowerOperation] = {
    op.action: register(op)
    for op in (Start(), Shutdown(), Stop(), Reboot(), Reset(), Suspend(), Resume())
}
