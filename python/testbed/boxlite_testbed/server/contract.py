"""Validate server responses against the official OpenAPI documents (A and B).

Needs ``pyyaml`` and ``jsonschema`` (the ``test`` extra). OpenAPI's
``nullable: true`` is translated to a JSON-Schema ``null`` type. Deviations
that real servers have and that the test server reproduces on purpose are
applied explicitly (see ``KNOWN_DEVIATIONS``) so that everything else is
checked strictly.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_FILES = {
    "sse": os.path.join(HERE, "openapi", "rest-sandbox-open-api.aed55982.yaml"),
    "current": os.path.join(HERE, "openapi", "box.openapi.17f08657.yaml"),
}

# Documented server behaviour that differs from the contract (docs/dialects.md).
KNOWN_DEVIATIONS = {
    "sse": [
        # A.3: "the early contract said 26-char ULID ...; Ref with recent cores
        # returns 12-character Base62 ids such as PhAE3FB0VnFh".
        ("Box.box_id pattern", lambda d: d["components"]["schemas"]["Box"]["properties"]["box_id"].pop("pattern")),
    ],
    "current": [
        # B.2: "serve's Snapshot has no guest_disk_bytes".
        ("Snapshot.guest_disk_bytes not required",
         lambda d: d["components"]["schemas"]["Snapshot"]["required"].remove("guest_disk_bytes")),
        # B.5: request_id is only in X-Request-Id; older serves put null in the body, 0.11.0 leaves
        # it out (optional in the contract, so only the null needs allowing).
        ("ErrorModel.request_id may be null",
         lambda d: d["components"]["schemas"]["ErrorModel"]["properties"]["request_id"].update(nullable=True)),
    ],
}


def _fix_nullable(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("nullable") is True and "type" in node:
            t = node["type"]
            node["type"] = list(t) + ["null"] if isinstance(t, list) else [t, "null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = list(node["enum"]) + [None]
        for v in node.values():
            _fix_nullable(v)
    elif isinstance(node, list):
        for v in node:
            _fix_nullable(v)


class ContractError(AssertionError):
    pass


class Contract:
    def __init__(self, dialect: str, apply_deviations: bool = True):
        import yaml
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource

        with open(SPEC_FILES[dialect], encoding="utf-8") as f:
            self.raw = yaml.safe_load(f)
        self.doc = copy.deepcopy(self.raw)
        self.deviations: list[str] = []
        if apply_deviations:
            for name, fn in KNOWN_DEVIATIONS.get(dialect, []):
                fn(self.doc)
                self.deviations.append(name)
        _fix_nullable(self.doc)
        self.uri = f"urn:boxlite-contract:{dialect}"
        res = Resource.from_contents(self.doc, default_specification=__import__(
            "referencing.jsonschema", fromlist=["DRAFT202012"]).DRAFT202012)
        self.registry = Registry().with_resource(self.uri, res)
        self._validator_cls = Draft202012Validator

    # ------------------------------------------------------------------ lookup
    def operations(self) -> list[tuple[str, str, str]]:
        """(METHOD, path template, operationId) for every operation."""
        out = []
        for path, item in self.doc["paths"].items():
            for m, op in item.items():
                if m in ("get", "post", "put", "delete", "head", "patch"):
                    out.append((m.upper(), path, op.get("operationId", "")))
        return out

    def operation(self, method: str, template: str) -> dict:
        try:
            return self.doc["paths"][template][method.lower()]
        except KeyError:
            raise ContractError(f"{method} {template} is not in the contract")

    def _deref(self, obj: dict) -> dict:
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            node: Any = self.doc
            for part in ref[2:].split("/"):
                node = node[part]
            obj = node
        return obj

    def schema_validate(self, schema: dict, instance: Any, what: str) -> None:
        wrapped = {"$ref": self.uri + "#" + "/__inline__"} if False else schema
        v = self._validator_cls(self._rebase(wrapped), registry=self.registry)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            msgs = "; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5])
            raise ContractError(f"{what}: {msgs}\ninstance: {json.dumps(instance)[:800]}")

    def _rebase(self, schema: Any) -> Any:
        """Point local refs at the registered document."""
        if isinstance(schema, dict):
            out = {}
            for k, v in schema.items():
                if k == "$ref" and isinstance(v, str) and v.startswith("#/"):
                    out[k] = self.uri + v
                else:
                    out[k] = self._rebase(v)
            return out
        if isinstance(schema, list):
            return [self._rebase(v) for v in schema]
        return schema

    def validate_response(self, method: str, template: str, status: int, *, body: Optional[bytes] = None,
                          content_type: Optional[str] = None, headers: Optional[dict] = None,
                          allow_undeclared_status: bool = False) -> Optional[dict]:
        """Check status, media type, JSON body and declared headers. Returns the
        response object of the contract (or None when undeclared and allowed)."""
        op = self.operation(method, template)
        responses = op.get("responses", {})
        resp = responses.get(str(status))
        if resp is None:
            if allow_undeclared_status:
                return None
            raise ContractError(f"{method} {template}: status {status} not declared "
                                f"(declared: {sorted(responses)})")
        resp = self._deref(resp)
        content = resp.get("content")
        if not content:
            if body:
                raise ContractError(f"{method} {template} {status}: contract declares no body, got {body[:100]!r}")
            return resp
        ct = (content_type or "").split(";", 1)[0].strip().lower()
        if ct not in content:
            raise ContractError(f"{method} {template} {status}: media type {ct!r} not in {sorted(content)}")
        media = content[ct]
        if ct == "application/json":
            try:
                data = json.loads(body or b"")
            except ValueError as exc:
                raise ContractError(f"{method} {template} {status}: invalid JSON: {exc}")
            schema = media.get("schema")
            if schema is not None:
                self.schema_validate(schema, data, f"{method} {template} {status}")
        for hname in (resp.get("headers") or {}):
            if headers is not None and hname not in headers:
                raise ContractError(f"{method} {template} {status}: header {hname} missing")
        return resp

    def validate_request_body(self, method: str, template: str, body: Any) -> None:
        op = self.operation(method, template)
        rb = self._deref(op.get("requestBody") or {})
        schema = ((rb.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is not None:
            self.schema_validate(schema, body, f"request {method} {template}")
