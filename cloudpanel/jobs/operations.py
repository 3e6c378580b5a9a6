"""Operations: each long operation is one object that holds all there is to know about it.

An Operation names its job kind and target type, and holds
- `check()`: who may run it, on which states, with which parameters (raises the domain
  errors of cloudpanel.errors; returns the job's parameters);
- `run()`: what the worker does (through cloudpanel.virt), reporting through the context;
- `on_abandoned()`: the repair when a job ends without `run` finishing (worker died, or
  cancelled while pending).

`start()` is the one entry point the pages, the REST API and any later API layer call: it
checks, then creates the job (one active exclusive job per target) and queues it when the
transaction commits. Operations are registered once, as objects (`register`), and the
runner finds them by the job's kind.

An operation that fans out runs child jobs under its own job with `ctx.run_children()`:
cancelling the parent stops the children, their progress adds up to the parent's, and
their outcomes come back as the parent's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.db import transaction

from cloudpanel.audit.jobs import audited_start

from . import registry
from .models import Job
from .services import JobContext, job_create


class Operation:
    kind: ClassVar[str]
    target_type: ClassVar[str]
    # Exclusive operations change their target: at most one active job per target.
    exclusive: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Every start is audited, a subclass's own included (accepted, denied or failed).
        if "start" in cls.__dict__ and not getattr(cls.start, "__audited__", False):
            cls.start = audited_start(cls.start)

    def check(self, *, user, target, **params) -> dict:
        """Refuse (with a domain error) or return the parameters the job will carry."""
        return {}

    def run(self, job: Job, ctx: JobContext) -> dict | None:
        raise NotImplementedError

    def on_abandoned(self, job: Job) -> None:
        """Repair the target after a job that ended without `run` finishing."""

    # How a target is described on its job; subclasses know their target's model.
    def target_name(self, target) -> str:
        return str(target)

    def target_project(self, target):
        return getattr(target, "project", None)

    def on_job_created(self, target, job: Job) -> None:
        """Inside the creating transaction, after the job row exists (e.g. mark it current)."""

    @audited_start
    def start(self, *, user, target, **params) -> Job:
        """Check, then create and queue the job: the one way every caller starts this."""
        job_params = self.check(user=user, target=target, **params)
        with transaction.atomic():
            return self.create_job(user=user, target=target, params=job_params)

    def create_job(
        self, *, user, target, params: dict, parent: Job | None = None, enqueue: bool = True
    ) -> Job:
        """The job row for `target` (checked already), queued when the transaction commits."""
        job = job_create(
            kind=self.kind,
            target_type=self.target_type,
            target_id=target.pk,
            target_name=self.target_name(target),
            project=self.target_project(target),
            user=user,
            params=params,
            exclusive=self.exclusive,
            parent=parent,
            enqueue=enqueue,
        )
        self.on_job_created(target, job)
        return job

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}>"


def register(operation: Operation) -> Operation:
    return registry.register(operation)


def get(kind: str) -> Operation:
    return registry.get(kind)


class FunctionOperation(Operation):
    """An operation made of a plain function (`job_handler`): for small internal jobs and
    tests, which have no checks of their own."""

    def __init__(self, kind: str, fn: Callable, on_abandoned: Callable | None, target_type: str):
        self.kind = kind
        self.target_type = target_type
        self._fn = fn
        self._on_abandoned = on_abandoned

    def run(self, job: Job, ctx: JobContext) -> Any:
        return self._fn(job, ctx)

    def on_abandoned(self, job: Job) -> None:
        if self._on_abandoned:
            self._on_abandoned(job)


def job_handler(kind: str, on_abandoned: Callable[[Job], None] | None = None, *, target_type=""):
    """Register a function `fn(job, ctx)` as the operation of `kind`."""

    def decorate(fn):
        register(FunctionOperation(kind, fn, on_abandoned, target_type))
        return fn

    return decorate
