"""The OpenAPI schema's shared parts: what drf-spectacular cannot see from one view.

Every operation documents its error answers with the one error body (cloudpanel.api.
error_body), the 202 job answers (the job, its Location, how to poll), reads' ETag and
304, integer ids, a summary of its own, and the resource it belongs to as its tag."""

from __future__ import annotations

import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from cloudpanel.filters import MAX_ID, IdFilter

ERROR_DESCRIPTIONS = {
    "400": "The request was refused as it is: a field, a query parameter or the body "
    "(`errors` names each field).",
    "401": "No credentials, or bad ones (see `WWW-Authenticate`).",
    "403": "Authenticated, but not allowed (`code` permission_denied, or quota_exceeded "
    "when the project's quota would be passed).",
    "404": "No such object, or one of a project the caller cannot see.",
    "409": "The object's state forbids it now; `code` job_running brings the running `job`.",
    "415": "A request body of a content type this operation does not take.",
    "429": "Too many requests: retry after `Retry-After` seconds.",
    "502": "The hypervisor answered, but not as asked (`code` host_error).",
    "503": "The host is unreachable (`code` host_unavailable), or a service the answer "
    "needs is down.",
}

POLLING = (
    "The work goes on in a job. The body is the job (as `GET /api/v1/jobs/{id}/` shows it) "
    "plus the id of the object it acts on or makes (`instance`, `image`, `snapshot`) where "
    "there is one; `Location` is the job's absolute URL. Poll it (every second or two is "
    "plenty) until `status` is `succeeded`, `failed` or `cancelled`, or follow the status "
    "WebSocket instead of polling."
)


# The ids a 202 body may carry beside the job (cloudpanel.api.job_accepted's `extra`).
ACCEPTED_IDS = ("instance", "image", "snapshot", "mirror", "host")


class ErrorSerializer(serializers.Serializer):
    """Every error answer's body."""

    detail = serializers.CharField(help_text="What went wrong, in a sentence.")
    code = serializers.CharField(
        help_text="Stable, for programs: invalid, not_authenticated, authentication_failed, "
        "permission_denied, quota_exceeded, not_found, method_not_allowed, "
        "unsupported_media_type, conflict, job_running, throttled, host_error, "
        "host_unavailable, ..."
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="The refused fields' messages (a nested field as `outer.inner`, a list "
        "item's as `outer.0.inner`; the others under `non_field_errors`); empty otherwise.",
    )
    job = serializers.DictField(
        required=False, help_text="With code job_running only: the job that runs (a Job)."
    )

    class Meta:
        ref_name = "Error"


def _resource_of(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    # /api/v1/<resource>/...
    return parts[2] if len(parts) > 2 and parts[:2] == ["api", "v1"] else parts[-1]


class ContractSchema(AutoSchema):
    def _map_basic_serializer(self, serializer, direction):
        """A serializer's ADMIN_ONLY fields are left out for other users: not required."""
        schema = super()._map_basic_serializer(serializer, direction)
        admin_only = set(getattr(serializer, "ADMIN_ONLY", ()))
        if admin_only and "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in admin_only]
            if not schema["required"]:
                del schema["required"]
            for name in admin_only & set(schema.get("properties", {})):
                prop = schema["properties"][name]
                note = "Administrators only."
                prop["description"] = f"{prop.get('description', '')} {note}".strip()
        return schema

    def get_tags(self) -> list[str]:
        tags = super().get_tags()
        if getattr(self.view, "schema_tags_given", False):
            return tags
        return [_resource_of(self.path)]

    def get_summary(self):
        summary = super().get_summary()
        if summary:
            return summary
        action = getattr(self.view, "action", None)
        handler = getattr(self.view, action, None) if action else None
        doc = " ".join((getattr(handler, "__doc__", None) or "").split("\n\n")[0].split())
        doc = doc or " ".join((super().get_description() or "").split("\n\n")[0].split())
        if doc:
            return re.split(r"(?<=[a-z)])\. ", doc)[0].rstrip(".")
        resource = _resource_of(self.path).rstrip("s").replace("_", " ")
        article = "an" if resource[:1] in "aeiou" else "a"
        defaults = {
            "list": f"List the {resource}s",
            "retrieve": f"Show {article} {resource}",
            "create": f"Create {article} {resource}",
            "update": f"Replace {article} {resource}",
            "partial_update": f"Change {article} {resource}",
            "destroy": f"Delete {article} {resource}",
        }
        return (
            defaults.get(action) or (action or self.method.lower()).replace("_", " ").capitalize()
        )

    def get_description(self):
        description = super().get_description() or ""
        if getattr(self.view, "action", None) == "list" and self.method == "GET":
            description += (
                "\n\nA query parameter this list does not take is refused (400, naming the "
                "ones it takes)."
            )
        return description.strip()

    def _resolve_path_parameters(self, variables):
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["name"] in ("id", "pk") or re.search(
                rf"\(\?P<{re.escape(parameter['name'])}>\[0-9\]\+\)", self.path_regex
            ):
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters

    def _get_parameters(self):
        parameters = super()._get_parameters()
        filterset = getattr(self.view, "filterset_class", None)
        id_filters = {
            name
            for name, f in (filterset.base_filters.items() if filterset else ())
            if isinstance(f, IdFilter)
        }
        for parameter in parameters:
            if parameter["in"] == "query" and parameter["name"] in id_filters:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        if self.method == "GET":
            parameters.append(
                {
                    "in": "header",
                    "name": "If-None-Match",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "An ETag of an earlier answer: 304 when it is still that.",
                }
            )
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if "202" in responses:
            responses["202"] = self._job_accepted()
        if self.method == "GET" and "200" in responses:
            responses["200"].setdefault("headers", {})["ETag"] = {
                "schema": {"type": "string"},
                "description": "A weak tag of the body, for If-None-Match.",
            }
            responses["304"] = {"description": "Not modified: the If-None-Match tag is current."}
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        for code in self._error_codes():
            responses.setdefault(
                code,
                {
                    "content": {"application/json": {"schema": error}},
                    "description": ERROR_DESCRIPTIONS[code],
                },
            )
            if code == "429":
                responses[code]["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}
                }
            if code == "401":
                responses[code]["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": "The scheme."}
                }
        return responses

    def _error_codes(self) -> list[str]:
        # 404 everywhere: an id may also come in the query or the body.
        codes = ["400", "401", "403", "404", "429", "502", "503"]
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.append("409")
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        return sorted(codes)

    def _job_accepted(self) -> dict:
        from cloudpanel.jobs.api.serializers import JobSerializer

        job = self.resolve_serializer(JobSerializer, "response").ref
        ids = {
            name: {"type": "integer", "description": f"The {name} the job acts on or makes."}
            for name in ACCEPTED_IDS
        }
        return {
            "description": POLLING,
            "headers": {
                "Location": {
                    "schema": {"type": "string", "format": "uri"},
                    "description": "The job's absolute URL, to poll.",
                    "required": True,
                }
            },
            "content": {
                "application/json": {
                    "schema": {"allOf": [job, {"type": "object", "properties": ids}]}
                }
            },
        }


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The personal API tokens (cloudpanel.accounts): `Authorization: Bearer <token>`."""

    target_class = "cloudpanel.accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token: `Authorization: Bearer <token>`.",
        }
