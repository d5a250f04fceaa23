"""The errors the BoxLite REST dialects (SSE era and current) raise, and the checks of request
bodies and query values they share; see docs/dialects.md.
"""

from __future__ import annotations

from typing import Any, Optional




# SDK error class name -> (B snake code is the class attribute) REST type names
TYPE_BY_CODE = {
    "invalid_argument": "InvalidArgumentError",
    "unsupported": "UnsupportedError",
    "unauthenticated": "AuthError",
    "permission_denied": "AuthError",
    "not_found": "NotFoundError",
    "session_reaped": "SessionReaped",
    "already_exists": "AlreadyExistsError",
    "invalid_state": "InvalidStateError",
    "stopped": "StoppedError",
    "image_pull_failed": "ImageError",
    "execution_failed": "ExecutionError",
    "resource_exhausted": "ResourceExhaustedError",
    "network_unavailable": "NetworkError",
    "upstream_unavailable": "UpstreamUnavailableError",
    "engine_unavailable": "EngineError",
    "storage_error": "StorageError",
    "database_error": "DatabaseError",
    "metadata_error": "MetadataError",
    "config_error": "ConfigError",
    "internal": "InternalError",
    "timeout": "TimeoutError",
}
CODE_BY_TYPE = {v: k for k, v in TYPE_BY_CODE.items()}
CODE_BY_TYPE["AuthError"] = "unauthenticated"


class ApiError(Exception):
    """An error answer; ``kind`` is the snake_case code."""

    def __init__(self, status: int, code: str, message: str, *, wrapped: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.wrapped = wrapped  # A: HTTPException-style {"detail": {"error": ...}}


class PlainError(Exception):
    """A framework rejection answered with a plain-text body."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


class Validation(Exception):
    """Request validation failure (A: FastAPI 422 list; B: plain-text 422)."""

    def __init__(self, items: list[dict[str, Any]], text: str):
        super().__init__(text)
        self.items = items
        self.text = text


_T = {
    "str": (str,),
    "int": (int,),
    "num": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def check_fields(body: Any, spec: dict[str, str], *, forbid_extra: bool,
                 required: tuple[str, ...] = ()) -> None:
    """Minimal typed-field validation in the style of pydantic/serde."""
    if not isinstance(body, dict):
        raise Validation([{"type": "model_attributes_type", "loc": ["body"],
                           "msg": "Input should be a valid dictionary or object to extract fields from",
                           "input": body}],
                         "Failed to deserialize the JSON body into the target type: invalid type: expected struct")
    items = []
    texts = []
    for k in required:
        if k not in body:
            items.append({"type": "missing", "loc": ["body", k], "msg": "Field required", "input": body})
            texts.append(f"missing field `{k}`")
    for k, v in body.items():
        t = spec.get(k)
        if t is None:
            if forbid_extra:
                items.append({"type": "extra_forbidden", "loc": ["body", k],
                              "msg": "Extra inputs are not permitted", "input": v})
                texts.append(f"unknown field `{k}`, expected one of "
                             + ", ".join(f"`{f}`" for f in spec))
            continue
        if v is None:
            continue
        ok_types = _T[t.rstrip("[]")]
        ok = isinstance(v, ok_types) and not (t in ("int", "num") and isinstance(v, bool))
        if t == "list[str]" or t == "dict[str]":
            pass
        if not ok:
            items.append({"type": f"{t}_type", "loc": ["body", k],
                          "msg": f"Input should be a valid {t}", "input": v})
            texts.append(f"invalid type for `{k}`: expected {t}")
    if items:
        raise Validation(items, "Failed to deserialize the JSON body into the target type: " + "; ".join(texts))


def _item_errors(body: dict, nested_network: bool) -> list[tuple[list, str, Any]]:
    """Nested shape checks of CreateBoxRequest (loc, message, input). ``nested_network``: the
    network may also be given per direction (``outbound``/``inbound``)."""
    errs: list[tuple[list, str, Any]] = []

    def need(obj: Any, loc: list, key: str, types: tuple, required: bool) -> None:
        if key not in obj or obj[key] is None:
            if required:
                errs.append((loc + [key], "Field required", obj))
            return
        v = obj[key]
        if not isinstance(v, types) or (bool not in types and isinstance(v, bool)):
            errs.append((loc + [key], f"Input should be a valid {types[0].__name__}", v))

    for i, p in enumerate(body.get("ports") or []):
        if not isinstance(p, dict):
            errs.append((["body", "ports", i], "Input should be a valid dictionary", p))
            continue
        need(p, ["body", "ports", i], "guest_port", (int,), True)
        need(p, ["body", "ports", i], "host_port", (int,), False)
        need(p, ["body", "ports", i], "protocol", (str,), False)
        need(p, ["body", "ports", i], "host_ip", (str,), False)
        if isinstance(p.get("protocol"), str) and p["protocol"] not in ("tcp", "udp"):
            errs.append((["body", "ports", i, "protocol"], "Input should be 'tcp' or 'udp'", p["protocol"]))
    for i, v in enumerate(body.get("volumes") or []):
        if not isinstance(v, dict):
            errs.append((["body", "volumes", i], "Input should be a valid dictionary", v))
            continue
        need(v, ["body", "volumes", i], "host_path", (str,), True)
        need(v, ["body", "volumes", i], "guest_path", (str,), True)
        need(v, ["body", "volumes", i], "read_only", (bool,), False)
    for i, sec in enumerate(body.get("secrets") or []):
        if not isinstance(sec, dict):
            errs.append((["body", "secrets", i], "Input should be a valid dictionary", sec))
            continue
        need(sec, ["body", "secrets", i], "name", (str,), True)
        need(sec, ["body", "secrets", i], "value", (str,), True)
        need(sec, ["body", "secrets", i], "hosts", (list,), False)
        need(sec, ["body", "secrets", i], "placeholder", (str,), False)
    net = body.get("network")
    if isinstance(net, dict) and nested_network and ({"outbound", "inbound"} & set(net)):
        # serve 0.11 also takes {outbound: {mode, allow_net}, inbound: {mode, allow_net}}.
        for k in sorted(set(net) - {"outbound", "inbound"}):
            errs.append((["body", "network", k], "Extra inputs are not permitted", net[k]))
        for side in ("outbound", "inbound"):
            d = net.get(side)
            if d is None:
                continue
            if not isinstance(d, dict):
                errs.append((["body", "network", side], "Input should be a valid dictionary", d))
                continue
            if d.get("mode") not in ("enabled", "disabled"):
                errs.append((["body", "network", side, "mode"], "Input should be 'enabled' or 'disabled'",
                             d.get("mode")))
            for k in sorted(set(d) - {"mode", "allow_net"}):
                errs.append((["body", "network", side, k], "Extra inputs are not permitted", d[k]))
            need(d, ["body", "network", side], "allow_net", (list,), False)
    elif isinstance(net, dict):
        if net.get("mode") not in ("enabled", "disabled"):
            errs.append((["body", "network", "mode"], "Input should be 'enabled' or 'disabled'", net.get("mode")))
        extra = set(net) - {"mode", "allow_net"}
        for k in sorted(extra):
            errs.append((["body", "network", k], "Extra inputs are not permitted", net[k]))
        need(net, ["body", "network"], "allow_net", (list,), False)
    adv = body.get("advanced")
    if isinstance(adv, dict):
        for k in sorted(set(adv) - {"capabilities"}):
            errs.append((["body", "advanced", k], "unknown field", adv[k]))
        caps = adv.get("capabilities")
        if caps is not None:
            if not isinstance(caps, dict) or set(caps) - {"add", "drop"}:
                errs.append((["body", "advanced", "capabilities"], "expected {add, drop}", caps))
            else:
                for k in ("add", "drop"):
                    v = caps.get(k)
                    if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                        errs.append((["body", "advanced", "capabilities", k], "expected a list of strings", v))
    for k in ("entrypoint", "cmd"):
        v = body.get(k)
        if isinstance(v, list) and not all(isinstance(x, str) for x in v):
            errs.append((["body", k], "Input should be a valid list of strings", v))
    env = body.get("env")
    if isinstance(env, dict) and not all(isinstance(x, str) for x in env.values()):
        errs.append((["body", "env"], "Input should be a valid dictionary of strings", env))
    return errs


def check_create_items(body: dict, nested_network: bool = False) -> None:
    errs = _item_errors(body, nested_network)
    if errs:
        raise Validation([{"type": "value_error", "loc": loc, "msg": msg, "input": inp} for loc, msg, inp in errs],
                         "Failed to deserialize the JSON body into the target type: "
                         + "; ".join(f"{'.'.join(map(str, loc[1:]))}: {msg}" for loc, msg, _ in errs))


def str_list(v: Any, name: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Validation([{"type": "list_type", "loc": ["body", name], "msg": "Input should be a valid list of strings",
                           "input": v}],
                         f"Failed to deserialize the JSON body into the target type: {name}: expected a sequence of strings")
    return v


def str_map(v: Any, name: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise Validation([{"type": "dict_type", "loc": ["body", name], "msg": "Input should be a valid dictionary of strings",
                           "input": v}],
                         f"Failed to deserialize the JSON body into the target type: {name}: expected a map of strings")
    return v


def qbool(v: Optional[str], default: bool = False) -> bool:
    if v is None:
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")
