"""Shared implementation of the two BoxLite REST dialects (A: SSE era, B: current).

Subclasses define error bodies, authentication, prefix rules and the
dialect-specific routes; see docs/dialects.md (sse-ref, sse-serve, current).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from typing import Any, Optional
from urllib.parse import unquote

from aiohttp import web

from .app import Dialect
from .core import ExecSession, env_tuples, info_status, log, sdk_error_code
from .files import ArchiveError, download_tar, upload_tar

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


def _str_list(v: Any, name: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Validation([{"type": "list_type", "loc": ["body", name], "msg": "Input should be a valid list of strings",
                           "input": v}],
                         f"Failed to deserialize the JSON body into the target type: {name}: expected a sequence of strings")
    return v


def _str_map(v: Any, name: str) -> dict[str, str]:
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


class RestDialect(Dialect):
    """Common parts of A and B."""

    unprefixed: tuple[str, ...] = ("/config",)
    has_tunnel = False
    # Whether create accepts the per-direction network shape as well as {mode, allow_net}.
    nested_network = False

    # ------------------------------------------------------------------ routing
    def common_routes(self) -> None:
        r = self.router.add
        r("POST", "/boxes", self.h_create_box, "createBox")
        r("GET", "/boxes", self.h_list_boxes, "listBoxes")
        r("POST", "/boxes/import", self.h_import_box, "importBox")
        r("GET", "/boxes/{box_id}", self.h_get_box, "getBox")
        r("HEAD", "/boxes/{box_id}", self.h_head_box, "boxExists")
        r("DELETE", "/boxes/{box_id}", self.h_delete_box, "removeBox")
        r("POST", "/boxes/{box_id}/start", self.h_start_box, "startBox")
        r("POST", "/boxes/{box_id}/stop", self.h_stop_box, "stopBox")
        r("POST", "/boxes/{box_id}/snapshots", self.h_create_snapshot, "createSnapshot")
        r("GET", "/boxes/{box_id}/snapshots", self.h_list_snapshots, "listSnapshots")
        r("GET", "/boxes/{box_id}/snapshots/{name}", self.h_get_snapshot, "getSnapshot")
        r("DELETE", "/boxes/{box_id}/snapshots/{name}", self.h_delete_snapshot, "removeSnapshot")
        r("POST", "/boxes/{box_id}/snapshots/{name}/restore", self.h_restore_snapshot, "restoreSnapshot")
        r("POST", "/boxes/{box_id}/clone", self.h_clone_box, "cloneBox")
        r("POST", "/boxes/{box_id}/export", self.h_export_box, "exportBox")
        r("POST", "/boxes/{box_id}/exec", self.h_exec, "startExecution")
        r("GET", "/boxes/{box_id}/executions/{exec_id}", self.h_get_execution, "getExecution")
        r("POST", "/boxes/{box_id}/executions/{exec_id}/signal", self.h_signal, "signalExecution")
        r("POST", "/boxes/{box_id}/executions/{exec_id}/resize", self.h_resize, "resizeExecution")
        r("PUT", "/boxes/{box_id}/files", self.h_upload, "uploadFiles")
        r("GET", "/boxes/{box_id}/files", self.h_download, "downloadFiles")
        r("GET", "/metrics", self.h_runtime_metrics, "getRuntimeMetrics")
        r("GET", "/boxes/{box_id}/metrics", self.h_box_metrics, "getBoxMetrics")

    def _match_path(self, request: web.Request) -> str:
        return request.rel_url.raw_path

    # Prefix-stripping is done on the raw path; captured params are unquoted.
    def resolve(self, request: web.Request):
        raw = request.rel_url.raw_path
        sub = self.strip_prefix(raw)
        return sub

    # ---------------------------------------------------------------- errors
    def error(self, status: int, code: str, message: str, *, wrapped: bool = False) -> web.Response:
        raise NotImplementedError

    def sdk_error(self, exc: BaseException) -> web.Response:
        raise NotImplementedError

    def validation_error(self, v: Validation) -> web.Response:
        raise NotImplementedError

    def plain(self, status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/plain")

    async def run(self, request: web.Request, coro) -> web.StreamResponse:
        try:
            return await coro
        except ApiError as e:
            return self.error(e.status, e.code, e.message, wrapped=e.wrapped)
        except Validation as v:
            return self.validation_error(v)
        except PlainError as p:
            return self.plain(p.status, p.text)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if sdk_error_code(exc) is not None:
                return self.sdk_error(exc)
            log.exception("handler failure")
            return self.internal_exception(exc)

    def internal_exception(self, exc: BaseException) -> web.Response:
        return self.plain(500, "Internal Server Error")

    # ---------------------------------------------------------------- bodies
    async def json_body(self, request: web.Request, *, optional: bool = False) -> Any:
        raise NotImplementedError

    # --------------------------------------------------------------- helpers
    def box_not_found(self, box_id: str) -> ApiError:
        return ApiError(404, "not_found", f"box not found: {box_id}", wrapped=True)

    def exec_not_found(self, exec_id: str) -> ApiError:
        return ApiError(404, "not_found", f"execution not found: {exec_id}", wrapped=True)

    async def box_or_404(self, box_id: str):
        box = await self.backend.get_box(box_id)
        if box is None:
            raise self.box_not_found(box_id)
        return box

    def box_url(self, request: web.Request, box_id: str) -> str:
        raise NotImplementedError

    def box_json(self, info: Any) -> dict[str, Any]:
        st = info.state
        d = {
            "box_id": info.id,
            "name": info.name,
            "status": info_status(info),
            "created_at": info.created_at,
            "updated_at": info.created_at,
            "pid": getattr(st, "pid", None),
            "image": info.image,
            "cpus": info.cpus,
            "memory_mib": info.memory_mib,
            "labels": {},
        }
        return d

    async def info_json(self, box_id: str) -> dict[str, Any]:
        info = await self.backend.get_info(box_id)
        if info is None:
            raise self.box_not_found(box_id)
        return self.box_json(info)

    def location(self, resp: web.Response, url: str) -> web.Response:
        resp.headers["Location"] = url
        return resp

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj)

    def json(self, obj: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, text=self.dumps(obj), content_type="application/json")

    # ------------------------------------------------------------ box options
    def create_spec(self) -> dict[str, str]:
        raise NotImplementedError

    def build_options(self, body: dict[str, Any]):
        bl = self.backend.boxlite
        kw: dict[str, Any] = {}
        for k in ("image", "rootfs_path", "cpus", "memory_mib", "disk_size_gb", "working_dir", "user"):
            if body.get(k) is not None:
                kw[k] = body[k]
        env = _str_map(body.get("env"), "env")
        if env:
            kw["env"] = env_tuples(env)
        for k in ("entrypoint", "cmd"):
            if body.get(k) is not None:
                kw[k] = _str_list(body[k], k)
        vols = body.get("volumes") or []
        if vols:
            kw["volumes"] = [(v["host_path"], v["guest_path"], bool(v.get("read_only", False))) for v in vols]
        ports = body.get("ports") or []
        if ports:
            out = []
            for p in ports:
                d = {"guest_port": int(p["guest_port"])}
                if p.get("host_port"):
                    d["host_port"] = int(p["host_port"])
                if p.get("protocol"):
                    d["protocol"] = p["protocol"]
                if p.get("host_ip"):
                    d["host_ip"] = p["host_ip"]
                out.append(d)
            kw["ports"] = out
        net = body.get("network")
        if isinstance(net, dict) and ({"outbound", "inbound"} & set(net)):
            sides = {}
            for side, cls in (("outbound", bl.OutboundNetworkSpec), ("inbound", bl.InboundNetworkSpec)):
                if isinstance(net.get(side), dict):
                    sides[side] = cls(mode=net[side]["mode"], allow_net=list(net[side].get("allow_net") or []))
            kw["network"] = bl.NetworkSpec(**sides)
        elif isinstance(net, dict):
            kw["network"] = bl.NetworkSpec(mode=net.get("mode", "enabled"), allow_net=list(net.get("allow_net") or []))
        secrets_ = body.get("secrets") or []
        if secrets_:
            kw["secrets"] = [bl.Secret(s["name"], s["value"], hosts=list(s.get("hosts") or []),
                                       placeholder=s.get("placeholder")) for s in secrets_]
        for k in ("detach", "tty", "auto_resume"):
            if body.get(k) is not None:
                kw[k] = bool(body[k])
        adv = {}
        sec = body.get("security")
        if sec:
            try:
                adv["security"] = getattr(bl.SecurityOptions, sec)()
            except Exception:
                pass
        caps = (body.get("advanced") or {}).get("capabilities") if isinstance(body.get("advanced"), dict) else None
        if caps:
            adv["capabilities"] = bl.ContainerCapabilities(add=list(caps.get("add") or []),
                                                           drop=list(caps.get("drop") or []))
        if adv:
            kw["advanced"] = bl.AdvancedBoxOptions(**adv)
        return kw

    # ------------------------------------------------------------- handlers
    async def h_create_box(self, request: web.Request) -> web.StreamResponse:
        return await self.run(request, self._create_box(request))

    async def _create_box(self, request):
        body = await self.json_body(request)
        check_fields(body, self.create_spec(), forbid_extra=True)
        check_create_items(body, nested_network=self.nested_network)
        kw = self.build_options(body)
        self.extra_create_options(body, kw)
        try:
            opts = self.backend.boxlite.BoxOptions(**kw)
        except (TypeError, OverflowError, RuntimeError) as exc:
            if sdk_error_code(exc) is not None:
                raise
            self.bad_options(exc)
            raise
        box = await self.backend.rt.create(opts, name=body.get("name"))
        self.remember_create(box.id, body)
        info = await self.backend.get_info(box.id)
        resp = self.json(self.box_json(info), status=201)
        return self.location(resp, self.box_url(request, box.id))

    def extra_create_options(self, body: dict, kw: dict) -> None:
        pass

    def bad_options(self, exc: BaseException) -> None:
        """Binding-level rejection of an option value (TypeError/OverflowError).
        B (serve): 400 invalid_argument. A (Ref): escapes as a plain-text 500."""
        raise ApiError(400, "invalid_argument", f"invalid argument: {exc}")

    def remember_create(self, box_id: str, body: dict) -> None:
        pass

    async def h_list_boxes(self, request):
        return await self.run(request, self._list_boxes(request))

    async def _list_boxes(self, request):
        infos = await self.backend.list_info()
        return self.json(self.list_json(request, infos))

    def list_json(self, request, infos) -> dict:
        raise NotImplementedError

    async def h_get_box(self, request, box_id):
        return await self.run(request, self._get_box(unquote(box_id)))

    async def _get_box(self, box_id):
        return self.json(await self.info_json(box_id))

    async def h_head_box(self, request, box_id):
        info = await self.backend.get_info(unquote(box_id))
        return web.Response(status=204 if info is not None else 404)

    async def h_delete_box(self, request, box_id):
        return await self.run(request, self._delete_box(request, unquote(box_id)))

    async def _delete_box(self, request, box_id):
        force = qbool(request.query.get("force"))
        await self.before_delete(box_id)
        info = await self.backend.get_info(box_id)
        if force and info is not None:
            await self.backend.drop_box_execs(info.id)  # stop our stream pumps first
        await self.backend.rt.remove(box_id, force=force)
        if info is not None:
            await self.backend.drop_box_execs(info.id)
            self.backend.box_extra.pop(info.id, None)
        return web.Response(status=204)

    async def before_delete(self, box_id: str) -> None:
        pass

    async def boot_delay(self) -> None:
        if self.cfg.boot_delay > 0:
            await asyncio.sleep(self.cfg.boot_delay)

    async def lazy_boot_delay(self, box_id: str) -> None:
        """--boot-delay also applies when exec/files/metrics start a box lazily."""
        if self.cfg.boot_delay > 0:
            info = await self.backend.get_info(box_id)
            if info is not None and info_status(info) != "running":
                await asyncio.sleep(self.cfg.boot_delay)

    async def h_start_box(self, request, box_id):
        return await self.run(request, self._start_box(unquote(box_id)))

    async def _start_box(self, box_id):
        box = await self.box_or_404(box_id)
        await self.boot_delay()
        await box.start()
        return self.json(await self.info_json(box.id))

    async def h_stop_box(self, request, box_id):
        return await self.run(request, self._stop_box(request, unquote(box_id)))

    async def _stop_box(self, request, box_id):
        body = await self.json_body(request, optional=True)
        if body is not None:
            check_fields(body, {"timeout_seconds": "num"}, forbid_extra=False)
        box = await self.box_or_404(box_id)
        before = await self.backend.get_info(box.id)
        await box.stop()
        info = await self.backend.get_info(box.id)
        if info is None:  # auto-removed by the stop
            d = self.box_json(before)
            d["status"] = "stopped"
            d["pid"] = None
            await self.backend.drop_box_execs(box.id)
            return self.json(d)
        return self.json(self.box_json(info))

    # snapshots -------------------------------------------------------------
    def snapshot_json(self, s: Any) -> dict[str, Any]:
        d = {"id": s.id, "box_id": s.box_id, "name": s.name, "created_at": int(s.created_at),
             "guest_disk_bytes": int(getattr(s, "guest_disk_bytes", 0) or 0),
             "container_disk_bytes": int(getattr(s, "container_disk_bytes", 0) or 0),
             "size_bytes": int(getattr(s, "size_bytes", 0) or 0)}
        return d

    async def require_stopped(self, box_id: str, what: str) -> None:
        pass

    async def h_create_snapshot(self, request, box_id):
        return await self.run(request, self._create_snapshot(request, unquote(box_id)))

    async def _create_snapshot(self, request, box_id):
        body = await self.json_body(request)
        check_fields(body, {"name": "str"}, forbid_extra=False, required=("name",))
        box = await self.box_or_404(box_id)
        await self.require_stopped(box.id, "snapshot")
        snap = await box.snapshot.create(name=body["name"])
        return self.json(self.snapshot_json(snap), status=201)

    async def h_list_snapshots(self, request, box_id):
        return await self.run(request, self._list_snapshots(unquote(box_id)))

    async def _list_snapshots(self, box_id):
        box = await self.box_or_404(box_id)
        snaps = await box.snapshot.list()
        return self.json({"snapshots": [self.snapshot_json(s) for s in snaps]})

    async def h_get_snapshot(self, request, box_id, name):
        return await self.run(request, self._get_snapshot(unquote(box_id), unquote(name)))

    async def _get_snapshot(self, box_id, name):
        box = await self.box_or_404(box_id)
        snap = await box.snapshot.get(name)
        if snap is None:
            raise ApiError(404, "not_found", f"snapshot not found: {name}", wrapped=True)
        return self.json(self.snapshot_json(snap))

    async def h_delete_snapshot(self, request, box_id, name):
        return await self.run(request, self._delete_snapshot(unquote(box_id), unquote(name)))

    async def _delete_snapshot(self, box_id, name):
        box = await self.box_or_404(box_id)
        await box.snapshot.remove(name)
        return web.Response(status=204)

    async def h_restore_snapshot(self, request, box_id, name):
        return await self.run(request, self._restore_snapshot(unquote(box_id), unquote(name)))

    async def _restore_snapshot(self, box_id, name):
        box = await self.box_or_404(box_id)
        await box.snapshot.restore(name)
        return web.Response(status=204)

    async def h_clone_box(self, request, box_id):
        return await self.run(request, self._clone_box(request, unquote(box_id)))

    async def _clone_box(self, request, box_id):
        body = await self.json_body(request, optional=self.dialect_is_b())
        body = body or {}
        check_fields(body, {"name": "str"}, forbid_extra=False)
        box = await self.box_or_404(box_id)
        await self.require_stopped(box.id, "clone")
        clone = await box.clone_box(name=body.get("name"))
        info = await self.backend.get_info(clone.id)
        resp = self.json(self.box_json(info), status=201)
        return self.location(resp, self.box_url(request, clone.id))

    def dialect_is_b(self) -> bool:
        return False

    async def h_export_box(self, request, box_id):
        return await self.run(request, self._export_box(request, unquote(box_id)))

    async def _export_box(self, request, box_id):
        await self.json_body(request, optional=True)
        box = await self.box_or_404(box_id)
        await self.require_stopped(box.id, "export")
        tmp = tempfile.mkdtemp(prefix="boxlite-testbed-export-")
        try:
            path = await box.export(dest=tmp)
            with open(path, "rb") as f:
                data = f.read()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return web.Response(status=200, body=data, content_type="application/octet-stream")

    async def h_import_box(self, request):
        return await self.run(request, self._import_box(request))

    async def _import_box(self, request):
        data = await request.read()
        if not data:
            raise ApiError(400, "invalid_argument", "invalid argument: empty archive body", wrapped=True)
        tmp = tempfile.mkdtemp(prefix="boxlite-testbed-import-")
        try:
            path = os.path.join(tmp, "import.boxlite")
            with open(path, "wb") as f:
                f.write(data)
            name = request.query.get("name")
            kw = {"untrusted": True} if self.dialect_is_b() else {}
            try:
                box = await self.backend.rt.import_box(path, name=name, **kw)
            except TypeError:
                box = await self.backend.rt.import_box(path, name=name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        info = await self.backend.get_info(box.id)
        resp = self.json(self.box_json(info), status=201)
        return self.location(resp, self.box_url(request, box.id))

    # executions --------------------------------------------------------------
    exec_spec = {"command": "str", "args": "list", "env": "dict", "timeout_seconds": "num",
                 "working_dir": "str", "tty": "bool"}

    def exec_kwargs(self, body: dict) -> dict:
        raise NotImplementedError

    async def h_exec(self, request, box_id):
        return await self.run(request, self._exec(request, unquote(box_id)))

    async def _exec(self, request, box_id):
        body = await self.json_body(request)
        check_fields(body, self.exec_spec, forbid_extra=False, required=("command",))
        args = _str_list(body.get("args"), "args")
        env = _str_map(body.get("env"), "env")
        box = await self.box_or_404(box_id)
        await self.lazy_boot_delay(box.id)
        kw = self.exec_kwargs(body)
        execution = await box.exec(body["command"], args=args, env=env_tuples(env) or None,
                                   tty=bool(body.get("tty") or False), **kw)
        exec_id = execution.id()
        s = ExecSession(exec_id, box.id, execution, tty=bool(body.get("tty") or False),
                        command=body["command"], args=args)
        self.backend.add_exec(s)
        stdin_text = body.get("stdin") if self.dialect_is_b() else None
        if isinstance(stdin_text, str):
            try:
                await s.send_stdin(stdin_text.encode("utf-8"), close=True)
            except Exception:
                pass
        resp = self.json({"execution_id": exec_id}, status=201)
        return self.location(resp, self.box_url(request, box.id) + f"/executions/{exec_id}")

    def session_or_404(self, box_id: str, exec_id: str) -> ExecSession:
        s = self.backend.find_exec(exec_id)
        if s is None:
            raise self.exec_not_found(exec_id)
        return s

    async def h_get_execution(self, request, box_id, exec_id):
        return await self.run(request, self._get_execution(unquote(box_id), unquote(exec_id)))

    async def _get_execution(self, box_id, exec_id):
        s = self.session_or_404(box_id, exec_id)
        return self.json(self.execution_json(s))

    def execution_json(self, s: ExecSession) -> dict:
        raise NotImplementedError

    async def h_resize(self, request, box_id, exec_id):
        return await self.run(request, self._resize(request, unquote(box_id), unquote(exec_id)))

    async def _resize(self, request, box_id, exec_id):
        body = await self.json_body(request)
        check_fields(body, {"cols": "int", "rows": "int"}, forbid_extra=False, required=("cols", "rows"))
        if body["cols"] < 1 or body["rows"] < 1:
            raise ApiError(400, "invalid_argument", "invalid argument: cols and rows must be >= 1")
        s = self.session_or_404(box_id, exec_id)
        if not s.tty:
            raise ApiError(409, "invalid_state", f"invalid state: execution {exec_id} has no TTY")
        if s.done:
            raise ApiError(409, "invalid_state", f"invalid state: execution {exec_id} is not running")
        await s.resize(body["cols"], body["rows"])
        return web.Response(status=204)

    # files ---------------------------------------------------------------------
    async def h_upload(self, request, box_id):
        return await self.run(request, self._upload(request, unquote(box_id)))

    async def _upload(self, request, box_id):
        path = request.query.get("path")
        if path is None:
            raise self.missing_query("path")
        cap = self.cfg.effective_max_upload()
        if cap is not None and request.content_length is not None and request.content_length > cap:
            raise PlainError(413, "Failed to buffer the request body: length limit exceeded")
        body = await request.read()
        if cap is not None and len(body) > cap:
            raise PlainError(413, "Failed to buffer the request body: length limit exceeded")
        box = await self.box_or_404(box_id)
        await self.lazy_boot_delay(box.id)
        try:
            sid = request.query.get("source_is_dir")
            await upload_tar(self.backend.boxlite, box, body, path,
                             overwrite=qbool(request.query.get("overwrite"), True),
                             style=self.cfg.effective_upload_style(),
                             source_is_dir=None if sid is None else qbool(sid))
        except ArchiveError as exc:
            raise ApiError(400, "invalid_argument", f"invalid argument: {exc}")
        return web.Response(status=204)

    def missing_query(self, name: str) -> Exception:
        raise NotImplementedError

    async def h_download(self, request, box_id):
        return await self.run(request, self._download(request, unquote(box_id)))

    async def _download(self, request, box_id):
        path = request.query.get("path")
        if path is None:
            raise self.missing_query("path")
        box = await self.box_or_404(box_id)
        await self.lazy_boot_delay(box.id)
        data = await download_tar(self.backend.boxlite, box, path,
                                  follow_symlinks=qbool(request.query.get("follow_symlinks")),
                                  style="serve" if self.cfg.effective_upload_style() == "serve" else "ref")
        return web.Response(status=200, body=data, content_type="application/x-tar")

    # metrics ---------------------------------------------------------------------
    async def h_runtime_metrics(self, request):
        return await self.run(request, self._runtime_metrics())

    async def _runtime_metrics(self):
        m = await self.backend.rt.metrics()
        d = {}
        for k in ("boxes_created_total", "boxes_failed_total", "boxes_stopped_total", "num_running_boxes",
                  "total_commands_executed", "total_exec_errors"):
            d[k] = int(getattr(m, k, 0) or 0)
        return self.json(d)

    async def h_box_metrics(self, request, box_id):
        return await self.run(request, self._box_metrics(unquote(box_id)))

    async def _box_metrics(self, box_id):
        box = await self.box_or_404(box_id)
        await self.lazy_boot_delay(box.id)
        m = await box.metrics()
        g = lambda k: getattr(m, k, None)  # noqa: E731
        d = {
            "commands_executed_total": int(g("commands_executed_total") or 0),
            "exec_errors_total": int(g("exec_errors_total") or 0),
            "bytes_sent_total": int(g("bytes_sent_total") or 0),
            "bytes_received_total": int(g("bytes_received_total") or 0),
            "cpu_percent": g("cpu_percent"),
            "memory_bytes": g("memory_bytes"),
            "network_bytes_sent": g("network_bytes_sent"),
            "network_bytes_received": g("network_bytes_received"),
            "network_tcp_connections": g("network_tcp_connections"),
            "network_tcp_errors": g("network_tcp_errors"),
            "boot_timing": {
                "total_create_ms": g("total_create_duration_ms"),
                "guest_boot_ms": g("guest_boot_duration_ms"),
                "filesystem_setup_ms": g("stage_filesystem_setup_ms"),
                "image_prepare_ms": g("stage_image_prepare_ms"),
                "guest_rootfs_ms": g("stage_guest_rootfs_ms"),
                "box_config_ms": g("stage_box_config_ms"),
                "box_spawn_ms": g("stage_box_spawn_ms"),
                "container_init_ms": g("stage_container_init_ms"),
            },
        }
        return self.json(d)

    # control ---------------------------------------------------------------------
    async def reset_boxes(self) -> int:
        n = 0
        for s in list(self.backend.execs.values()):
            await s.aclose()
        for info in await self.backend.list_info():
            try:
                await self.backend.rt.remove(info.id, force=True)
                n += 1
            except Exception:
                pass
        for s in list(self.backend.execs.values()):
            await s.aclose()
        self.backend.execs.clear()
        self.backend.box_extra.clear()
        return n
