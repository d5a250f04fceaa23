"""The `boxrun` dialect: the BoxRun API (boxlite-ai/boxrun `boxrun serve`), docs/dialects.md, boxrun.

Routing, auth, helpers and the box routes; executions, files, run / gc and attach are
``dialect_boxrun_ops.py``'s, the shared errors and records ``boxrun_common.py``'s.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from typing import Any, Optional
from urllib.parse import unquote

from aiohttp import web

from .app import Dialect
from .boxrun_common import NANOID, CErr, CExec, CPlain, deser_error, host_limits, is_json_ct, split_action
from .core import env_tuples, log, new_id, utc_now
from .dialect_boxrun_ops import BoxRunProcessRoutes


class BoxRunDialect(BoxRunProcessRoutes, Dialect):
    name = "boxrun"

    def setup_routes(self) -> None:
        self.boxes: dict[str, dict[str, Any]] = {}
        self.execs: dict[str, CExec] = {}
        self.max_cpu, self.max_mem = host_limits()
        r = self.router.add
        r("GET", "/v1/info", self.h_info, "info")
        r("POST", "/v1/boxes", self.h_create, "createBox")
        r("GET", "/v1/boxes", self.h_list, "listBoxes")
        r("GET", "/v1/boxes/{box}", self.h_get, "getBox")
        r("POST", "/v1/boxes/{box}", self.h_box_action, "boxAction")
        r("DELETE", "/v1/boxes/{box}", self.h_delete, "removeBox")
        r("POST", "/v1/boxes/{box}/exec", self.h_exec, "createExec")
        r("GET", "/v1/boxes/{box}/execs", self.h_list_execs, "listExecs")
        r("GET", "/v1/boxes/{box}/exec/{eid}", self.h_get_exec, "getExec")
        r("POST", "/v1/boxes/{box}/exec/{eid}", self.h_exec_action, "execAction")
        r("GET", "/v1/boxes/{box}/exec/{eid}/events", self.h_events, "execEvents")
        r("POST", "/v1/boxes/{box}/files/upload", self.h_upload, "uploadFile")
        r("POST", "/v1/boxes/{box}/files/download", self.h_download, "downloadFile")
        r("GET", "/v1/boxes/{box}/attach", self.h_attach, "attach")
        r("POST", "/v1/run", self.h_run, "run")
        r("POST", "/v1/gc", self.h_gc, "gc")

    def ready_info(self) -> dict[str, Any]:
        return {"box_base": "/v1/boxes"}

    # ------------------------------------------------------------------ auth
    async def authenticate(self, request, route):
        if self.cfg.auth != "token":
            return None  # BoxRun has no authentication at all
        h = request.headers.get("Authorization", "")
        tok = h[7:] if h[:7].lower() == "bearer " else None
        if tok is None or not hmac.compare_digest(tok.encode(), self.cfg.token.encode()) \
                or request.get("token_expired"):
            return self.err(401, "UNAUTHORIZED", "invalid or missing bearer token (testbed extension)")
        return None

    # ----------------------------------------------------------------- helpers
    def err(self, status: int, code: str, message: str) -> web.Response:
        return web.Response(status=status, text=json.dumps({"code": code, "message": message}),
                            content_type="application/json")

    def injected_error(self, status: int) -> web.Response:
        return self.err(status, "RUNTIME_ERROR", f"testbed injected fault ({status})")

    def ok(self, obj: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, text=json.dumps(obj), content_type="application/json")

    async def run(self, coro) -> web.StreamResponse:
        try:
            return await coro
        except CErr as e:
            return self.err(e.status, e.code, e.message)
        except CPlain as p:
            return web.Response(status=p.status, text=p.text, content_type="text/plain")
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("boxrun handler failure")
            return self.err(400, "RUNTIME_ERROR", str(exc))

    async def body(self, request) -> Any:
        raw = await request.read()
        if not is_json_ct(request.headers.get("Content-Type", "")):
            raise CPlain(415, "Expected request with `Content-Type: application/json`")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise CPlain(400, f"Failed to parse the request body as JSON: {exc}")

    def find_box(self, key: str) -> dict[str, Any]:
        key = unquote(key).split(":", 1)[0]
        b = self.boxes.get(key)
        if b is None:
            for cand in self.boxes.values():
                if cand["name"] is not None and cand["name"] == key:
                    return cand
            raise CErr(404, "BOX_NOT_FOUND", f"Box '{key}' not found")
        return b

    def find_exec(self, eid: str) -> CExec:
        eid = unquote(eid).split(":", 1)[0]
        e = self.execs.get(eid)
        if e is None:
            raise CErr(404, "EXEC_NOT_FOUND", f"Exec '{eid}' not found")
        return e

    def box_json(self, b: dict) -> dict:
        return {k: b[k] for k in ("id", "name", "status", "image", "cpu", "memory_mb", "disk_size_gb",
                                  "network", "workdir", "env", "volumes", "boxlite_id", "error_code",
                                  "error_message", "created_at", "started_at", "stopped_at")}

    def check_resources(self, cpu: int, mem: int, exclude: Optional[str] = None) -> None:
        used_cpu = sum(b["cpu"] for b in self.boxes.values() if b["status"] == "running" and b["id"] != exclude)
        used_mem = sum(b["memory_mb"] for b in self.boxes.values()
                       if b["status"] == "running" and b["id"] != exclude)
        if used_cpu + cpu > self.max_cpu or used_mem + mem > self.max_mem:
            raise CErr(409, "RESOURCE_EXCEEDED",
                       f"Insufficient resources: requested cpu={cpu}, memory_mb={mem}; "
                       f"available cpu={self.max_cpu - used_cpu}, memory_mb={self.max_mem - used_mem}")

    def require_running(self, b: dict) -> None:
        if b["status"] != "running":
            raise CErr(400, "BOX_NOT_RUNNING", f"Box '{b['id']}' is not running (status: {b['status']})")

    async def sdk_box(self, b: dict):
        box = await self.backend.get_box(b["boxlite_id"])
        if box is None:
            raise CErr(400, "RUNTIME_ERROR", f"BoxLite box '{b['boxlite_id']}' not found")
        return box

    # ----------------------------------------------------------------- handlers
    async def h_info(self, request):
        return self.ok({"max_cpu": self.max_cpu, "max_memory_mb": self.max_mem})

    def _validate_create(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise deser_error("invalid type: expected struct CreateBoxRequest")
        if "image" not in body or body["image"] is None:
            raise deser_error("missing field `image`")
        types = {"image": str, "name": str, "cpu": int, "memory_mb": int, "disk_size_gb": int,
                 "network": bool, "workdir": str, "env": dict, "volumes": list}
        for k, t in types.items():
            v = body.get(k)
            if v is None:
                continue
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                raise deser_error(f"{k}: invalid type: expected {t.__name__}")
        if body.get("env") and not all(isinstance(v, str) for v in body["env"].values()):
            raise deser_error("env: invalid type: expected a string")
        vols = []
        for v in body.get("volumes") or []:
            if not isinstance(v, dict) or not isinstance(v.get("host_path"), str) \
                    or not isinstance(v.get("guest_path"), str):
                raise deser_error("volumes: missing field `host_path` or `guest_path`")
            vols.append({"host_path": v["host_path"], "guest_path": v["guest_path"],
                         "readonly": bool(v.get("readonly", False))})
        d = {"image": body["image"], "name": body.get("name"), "cpu": body.get("cpu") or 2,
             "memory_mb": body.get("memory_mb") or 1024, "disk_size_gb": body.get("disk_size_gb") or 8,
             "network": bool(body.get("network") or False), "workdir": body.get("workdir") or "/root",
             "env": body.get("env"), "volumes": vols or None}
        for k in ("cpu", "memory_mb", "disk_size_gb"):
            if body.get(k) is not None and body[k] <= 0:
                raise CErr(422, "VALIDATION_ERROR", f"{k} must be greater than 0")
        if not d["workdir"].startswith("/"):
            raise CErr(422, "VALIDATION_ERROR", "workdir must be an absolute path")
        return d

    async def _create_box(self, d: dict) -> dict:
        if d["name"] is not None and any(b["name"] == d["name"] for b in self.boxes.values()):
            raise CErr(409, "NAME_ALREADY_EXISTS", f"Box with name '{d['name']}' already exists")
        self.check_resources(d["cpu"], d["memory_mb"])
        for v in d["volumes"] or []:
            if not os.path.exists(v["host_path"]):
                raise CErr(400, "RUNTIME_ERROR", f"Volume host path does not exist: {v['host_path']}")
        bid = new_id("box_", 12, NANOID)
        b = dict(d, id=bid, status="creating", boxlite_id=None, error_code=None, error_message=None,
                 created_at=utc_now().isoformat(), started_at=None, stopped_at=None)
        self.boxes[bid] = b
        bl = self.backend.boxlite
        kw: dict[str, Any] = {"image": d["image"], "cpus": d["cpu"], "memory_mib": d["memory_mb"],
                              "disk_size_gb": d["disk_size_gb"], "working_dir": d["workdir"],
                              "auto_delete": 0}
        if d["env"]:
            kw["env"] = env_tuples(d["env"])
        if d["volumes"]:
            kw["volumes"] = [(v["host_path"], v["guest_path"], v["readonly"]) for v in d["volumes"]]
        try:
            kw["network"] = bl.NetworkSpec(mode="enabled" if d["network"] else "disabled")
        except Exception:
            pass
        try:
            box = await self.backend.rt.create(bl.BoxOptions(**kw))
        except Exception as exc:
            # the row stays in "creating" (BoxRun never updates it)
            raise CErr(400, "RUNTIME_ERROR", f"Failed to create BoxLite VM: {exc}")
        b["boxlite_id"] = box.id
        if self.cfg.boot_delay > 0:
            await asyncio.sleep(self.cfg.boot_delay)
        try:
            await box.start()
        except Exception as exc:
            raise CErr(400, "RUNTIME_ERROR", f"Failed to start BoxLite VM: {exc}")
        b["status"] = "running"
        b["started_at"] = utc_now().isoformat()
        return b

    async def h_create(self, request):
        async def go():
            d = self._validate_create(await self.body(request))
            b = await self._create_box(d)
            return self.ok(self.box_json(b), status=201)
        return await self.run(go())

    async def h_list(self, request):
        st = request.query.get("status")
        rows = list(self.boxes.values())
        if st and st != "all":
            rows = [b for b in rows if b["status"] == st]
        rows.sort(key=lambda b: b["created_at"], reverse=True)
        return self.ok([self.box_json(b) for b in rows])

    async def h_get(self, request, box):
        async def go():
            return self.ok(self.box_json(self.find_box(box)))
        return await self.run(go())

    async def h_box_action(self, request, box):
        async def go():
            key, action = split_action(box, "':start' or ':stop'")
            b = self.find_box(key)
            if action == "stop":
                self.require_running(b)
                sb = await self.sdk_box(b)
                try:
                    await sb.stop()
                except Exception as exc:
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to stop BoxLite VM: {exc}")
                b["status"] = "stopped"
                b["stopped_at"] = utc_now().isoformat()
                return self.ok(self.box_json(b))
            if action == "start":
                if b["status"] == "running":
                    raise CErr(409, "BOX_ALREADY_RUNNING", f"Box '{b['id']}' is already running")
                if b["status"] != "stopped":
                    raise CErr(400, "RUNTIME_ERROR", f"Box '{b['id']}' cannot be started (status: {b['status']})")
                self.check_resources(b["cpu"], b["memory_mb"], exclude=b["id"])
                sb = await self.sdk_box(b)
                if self.cfg.boot_delay > 0:
                    await asyncio.sleep(self.cfg.boot_delay)
                try:
                    await sb.start()
                except Exception as exc:
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to start BoxLite VM: {exc}")
                b["status"] = "running"
                b["started_at"] = utc_now().isoformat()
                b["stopped_at"] = None
                return self.ok(self.box_json(b))
            raise CErr(400, "VALIDATION_ERROR", f"Unknown action: {action}")
        return await self.run(go())

    async def h_delete(self, request, box):
        async def go():
            b = self.find_box(box)
            force = request.query.get("force") == "true"
            if b["status"] == "running" and not force:
                raise CErr(409, "BOX_ALREADY_RUNNING", "Box is running. Use force=true to remove.")
            await self._remove(b)
            return self.ok({"ok": True})
        return await self.run(go())

    async def _remove(self, b: dict) -> None:
        if b["boxlite_id"]:
            await self.backend.drop_box_execs(b["boxlite_id"])
            try:
                await self.backend.rt.remove(b["boxlite_id"], force=True)
            except Exception as exc:
                log.debug("remove %s: %r", b["boxlite_id"], exc)
            await self.backend.drop_box_execs(b["boxlite_id"])
        for eid in [e.id for e in self.execs.values() if e.box_id == b["id"]]:
            self.execs.pop(eid, None)
        self.boxes.pop(b["id"], None)

    async def reset_boxes(self) -> int:
        n = 0
        for b in list(self.boxes.values()):
            await self._remove(b)
            n += 1
        return n
