"""Shared implementation of the two BoxLite REST dialects (A: SSE era, B: current): routing,
errors, bodies and the box lifecycle routes; the routes over a box's contents are
``dialect_rest_ops.py``'s, the errors and request checks ``rest_checks.py``'s.

Subclasses define error bodies, authentication, prefix rules and the
dialect-specific routes; see docs/dialects.md (sse-ref, sse-serve, current).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .app import Dialect
from .core import env_tuples, info_status, log, sdk_error_code
from .dialect_rest_ops import RestBoxOperations
from .rest_checks import (ApiError, PlainError, Validation, str_list, str_map, check_create_items, check_fields,
                          qbool)


class RestDialect(RestBoxOperations, Dialect):
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
        env = str_map(body.get("env"), "env")
        if env:
            kw["env"] = env_tuples(env)
        for k in ("entrypoint", "cmd"):
            if body.get(k) is not None:
                kw[k] = str_list(body[k], k)
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
