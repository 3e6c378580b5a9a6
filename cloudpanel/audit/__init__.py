"""The audit: every state-changing action, from the UI, the API or the system.

- Job-backed operations: Operation.start records `accepted` (with the job) or the refusal;
  the runner records each job's end (cloudpanel/audit/jobs.py). Nothing to add per kind.
- Other services: `@audited("thing.verb", target="kwarg")` (decorators.py), or
  `audit_record(...)` (services.py) where a decorator does not fit.
- Who and from where: the request being served (context.py); none means the system.
- Reading: selectors.py decides who reads which events and what of them; api.py, views.py.
"""
