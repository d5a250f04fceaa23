"""The `boxrun` dialect: the BoxRun API (boxlite-ai/boxrun `boxrun serve`), docs/dialects.md, boxrun."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import posixpath
import shutil
import tempfile
from typing import Any, Optional
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from .app import Dialect
from .core import ExecSession, env_tuples, log, new_id, utc_now

NANOID = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"


class CErr(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class CPlain(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


def _is_json_ct(ct: str) -> bool:
    ct = ct.split(";", 1)[0].strip().lower()
    return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))


def _deser(msg: str) -> CPlain:
    return CPlain(422, f"Failed to deserialize the JSON body into the target type: {msg}")


def _host_limits() -> tuple[int, int]:
    cpu = os.environ.get("BOXRUN_MAX_CPU")
    mem = os.environ.get("BOXRUN_MAX_MEMORY_MB")
    max_cpu = int(cpu) if cpu else (os.cpu_count() or 2)
    if mem:
        max_mem = int(mem)
    else:
        max_mem = 4096
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        max_mem = int(line.split()[1]) // 1024
                        break
        except OSError:
            pass
    return max_cpu, max_mem


class CExec:
    """BoxRun's exec row (the session holds the process and its events)."""

    def __init__(self, session: ExecSession, box_id: str, cmd: list[str], env: Optional[dict],
                 workdir: str, timeout_ms: Optional[int]):
        self.session = session
        self.id = session.id
        self.box_id = box_id
        self.cmd = cmd
        self.env = env
        self.workdir = workdir
        self.timeout_ms = timeout_ms
        self.created_at = utc_now()
        self.canceled_at = None

    def status(self) -> str:
        s = self.session
        if s.canceled:
            return "canceled"
        if not s.done:
            return "running"
        if s.exit_code == 0 and not s.error_message:
            return "succeeded"
        return "failed"

    def to_json(self) -> dict[str, Any]:
        s = self.session
        fin = self.canceled_at or s.finished_at
        return {
            "id": self.id, "box_id": self.box_id, "status": self.status(), "cmd": self.cmd,
            "env": self.env, "workdir": self.workdir, "timeout_ms": self.timeout_ms,
            "exit_code": None if s.canceled else s.exit_code,
            "error_message": None if s.canceled else s.error_message,
            "created_at": self.created_at.isoformat(),
            "finished_at": fin.isoformat() if fin else None,
        }


class BoxRunDialect(Dialect):
    name = "boxrun"

    def setup_routes(self) -> None:
        self.boxes: dict[str, dict[str, Any]] = {}
        self.execs: dict[str, CExec] = {}
        self.max_cpu, self.max_mem = _host_limits()
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
        if not _is_json_ct(request.headers.get("Content-Type", "")):
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
            raise _deser("invalid type: expected struct CreateBoxRequest")
        if "image" not in body or body["image"] is None:
            raise _deser("missing field `image`")
        types = {"image": str, "name": str, "cpu": int, "memory_mb": int, "disk_size_gb": int,
                 "network": bool, "workdir": str, "env": dict, "volumes": list}
        for k, t in types.items():
            v = body.get(k)
            if v is None:
                continue
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                raise _deser(f"{k}: invalid type: expected {t.__name__}")
        if body.get("env") and not all(isinstance(v, str) for v in body["env"].values()):
            raise _deser("env: invalid type: expected a string")
        vols = []
        for v in body.get("volumes") or []:
            if not isinstance(v, dict) or not isinstance(v.get("host_path"), str) \
                    or not isinstance(v.get("guest_path"), str):
                raise _deser("volumes: missing field `host_path` or `guest_path`")
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
            raw = unquote(box)
            if ":" not in raw:
                raise CErr(400, "VALIDATION_ERROR", "Missing action (expected ':start' or ':stop')")
            key, action = raw.rsplit(":", 1)
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

    # ----------------------------------------------------------------- execs
    def _validate_exec(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise _deser("invalid type: expected struct ExecRequest")
        if "cmd" not in body or body["cmd"] is None:
            raise _deser("missing field `cmd`")
        cmd = body["cmd"]
        if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
            raise _deser("cmd: invalid type: expected a sequence of strings")
        if not cmd:
            raise CErr(422, "VALIDATION_ERROR", "cmd must not be empty")
        env = body.get("env")
        if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
            raise _deser("env: invalid type: expected a map of strings")
        wd = body.get("workdir")
        if wd is not None:
            if not isinstance(wd, str):
                raise _deser("workdir: invalid type: expected a string")
            if not wd.startswith("/"):
                raise CErr(422, "VALIDATION_ERROR", "workdir must be an absolute path")
        t = body.get("timeout_ms")
        if t is not None:
            if not isinstance(t, int) or isinstance(t, bool):
                raise _deser("timeout_ms: invalid type: expected u64")
            if t <= 0:
                raise CErr(422, "VALIDATION_ERROR", "timeout_ms must be greater than 0")
        return {"cmd": cmd, "env": env, "workdir": wd, "timeout_ms": t}

    async def _start_exec(self, b: dict, d: dict, *, tty: bool = False) -> CExec:
        self.require_running(b)
        sb = await self.sdk_box(b)
        workdir = d["workdir"] or b["workdir"]
        kw: dict[str, Any] = {"cwd": workdir}
        if d["timeout_ms"]:
            kw["timeout_secs"] = d["timeout_ms"] / 1000.0
        env = dict(b["env"] or {})
        env.update(d["env"] or {})
        try:
            execution = await sb.exec(d["cmd"][0], args=list(d["cmd"][1:]), env=env_tuples(env) or None,
                                      tty=tty, **kw)
        except Exception as exc:
            raise CErr(400, "RUNTIME_ERROR", f"Failed to execute command: {exc}")
        eid = new_id("exec_", 12, NANOID)
        s = ExecSession(eid, b["boxlite_id"], execution, tty=tty, command=d["cmd"][0], args=d["cmd"][1:])
        self.backend.add_exec(s)
        e = CExec(s, b["id"], d["cmd"], d["env"], workdir, d["timeout_ms"])
        self.execs[eid] = e
        return e

    async def h_exec(self, request, box):
        async def go():
            b = self.find_box(box)
            d = self._validate_exec(await self.body(request))
            e = await self._start_exec(b, d)
            return self.ok(e.to_json(), status=201)
        return await self.run(go())

    async def h_list_execs(self, request, box):
        async def go():
            b = self.find_box(box)
            rows = [e for e in self.execs.values() if e.box_id == b["id"]]
            rows.sort(key=lambda e: e.created_at, reverse=True)
            return self.ok([e.to_json() for e in rows])
        return await self.run(go())

    async def h_get_exec(self, request, box, eid):
        async def go():
            return self.ok(self.find_exec(eid).to_json())
        return await self.run(go())

    async def h_exec_action(self, request, box, eid):
        async def go():
            raw = unquote(eid)
            if ":" not in raw:
                raise CErr(400, "VALIDATION_ERROR", "Missing action (expected ':cancel')")
            key, action = raw.rsplit(":", 1)
            e = self.find_exec(key)
            if action != "cancel":
                raise CErr(400, "VALIDATION_ERROR", f"Unknown action: {action}")
            s = e.session
            if s.done or s.canceled:
                raise CErr(400, "EXEC_ALREADY_FINISHED", f"Exec '{e.id}' has already finished")
            s.canceled = True
            e.canceled_at = utc_now()
            try:
                await s.kill()
            except Exception:
                pass
            return self.ok(e.to_json())
        return await self.run(go())

    async def h_events(self, request, box, eid):
        try:
            e = self.find_exec(eid)
        except CErr as x:
            return self.err(x.status, x.code, x.message)
        s = e.session
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
        await resp.prepare(request)
        drop_after = request.get("drop_after_events")
        stall_after = request.get("stall_after_events")
        sent = 0

        def frame(ev_name: str, data: Any, seq: int, stream: Optional[str]) -> bytes:
            payload = json.dumps({"data": data, "seq": seq, "stream": stream}, separators=(",", ":"))
            return f"event: {ev_name}\ndata: {payload}\n\n".encode("utf-8")

        def encode(ev) -> bytes:
            if ev.kind == "exit":
                d = {"exit_code": ev.data.get("exit_code")}
                if ev.data.get("error"):
                    d = {"exit_code": -1, "error": ev.data["error"]}
                return frame("exit", json.dumps(d, separators=(",", ":")), ev.seq, None)
            return frame("log", ev.data, ev.seq, ev.kind)

        async def send(b: bytes) -> bool:
            nonlocal sent
            if drop_after is not None and sent >= drop_after:
                if request.transport is not None:
                    request.transport.close()
                return False
            if stall_after is not None and sent >= stall_after:
                await stall_until_disconnect(request)
                return False
            await resp.write(b)
            sent += 1
            return True

        try:
            pos = 0
            # Already finished without a stored exit event (cancelled): replay, then
            # a synthesized exit with the next seq.
            if s.canceled and s.done:
                for ev in list(s.events):
                    if not await send(encode(ev)):
                        return resp
                await send(frame("exit", json.dumps({"exit_code": None}, separators=(",", ":")),
                                 len(s.events), None))
                await resp.write_eof()
                return resp
            while True:
                while pos < len(s.events):
                    ev = s.events[pos]
                    pos += 1
                    if not await send(encode(ev)):
                        return resp
                    if ev.kind == "exit":
                        await resp.write_eof()
                        return resp
                if stall_after is not None and sent >= stall_after:
                    await stall_until_disconnect(request)
                    return resp
                got = await s.wait_for_events(pos, self.cfg.keepalive)
                if not got:
                    # live subscriber of a cancelled exec never sees an end (BoxRun quirk)
                    await resp.write(b":\n\n")
        except (ConnectionResetError, ConnectionError):
            return resp

    # ----------------------------------------------------------------- files
    async def h_upload(self, request, box):
        async def go():
            b = self.find_box(box)
            cap = self.cfg.effective_max_upload()
            file_data = dest = None
            too_big = cap is not None and request.content_length is not None and request.content_length > cap
            if not too_big:
                try:
                    reader = await request.multipart()
                    async for part in reader:
                        if part.name == "file":
                            file_data = bytes(await part.read(decode=False))
                        elif part.name == "dest":
                            dest = (await part.text())
                except Exception:
                    file_data = None  # BoxRun swallows body-read errors
                if cap is not None and file_data is not None and len(file_data) > cap:
                    file_data = None
            if file_data is None:
                raise CErr(400, "VALIDATION_ERROR", "Missing file field")
            if not dest:
                raise CErr(400, "VALIDATION_ERROR", "Missing dest field")
            self.require_running(b)
            sb = await self.sdk_box(b)
            tmp = tempfile.mkdtemp(prefix="boxrun-testbed-up-")
            try:
                name = posixpath.basename(dest.rstrip("/")) or "upload"
                host = os.path.join(tmp, name)
                with open(host, "wb") as f:
                    f.write(file_data)
                parent = posixpath.dirname(dest.rstrip("/")) or "/"
                try:
                    await sb.copy_in(host, parent.rstrip("/") + "/")
                except Exception as exc:
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to upload file: {exc}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return self.ok({"ok": True, "dest": dest})
        return await self.run(go())

    async def h_download(self, request, box):
        async def go():
            b = self.find_box(box)
            body = await self.body(request)
            if not isinstance(body, dict) or not isinstance(body.get("path"), str):
                raise _deser("missing field `path`")
            path = body["path"]
            self.require_running(b)
            sb = await self.sdk_box(b)
            tmp = tempfile.mkdtemp(prefix="boxrun-testbed-down-")
            try:
                name = posixpath.basename(path.rstrip("/")) or "download"
                host = os.path.join(tmp, name)
                try:
                    await sb.copy_out(path, host)
                except Exception as exc:
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to download file: {exc}")
                if os.path.isdir(host):
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to download file: {path} is a directory")
                if not os.path.isfile(host):
                    raise CErr(400, "RUNTIME_ERROR", f"Failed to download file: {path} not found")
                with open(host, "rb") as f:
                    data = f.read()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            resp = web.Response(status=200, body=data, content_type="application/octet-stream")
            resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
            return resp
        return await self.run(go())

    # ----------------------------------------------------------------- run / gc
    async def h_run(self, request):
        async def go():
            body = await self.body(request)
            if not isinstance(body, dict):
                raise _deser("invalid type: expected struct RunRequest")
            d = self._validate_create({k: body.get(k) for k in ("image", "cpu", "memory_mb", "disk_size_gb",
                                                                 "network", "env", "volumes")})
            ex = self._validate_exec({"cmd": body.get("cmd"), "timeout_ms": body.get("timeout_ms")})
            b = await self._create_box(d)
            try:
                e = await self._start_exec(b, ex)
                await e.session.wait_done(None)
                out = "".join(ev.data for ev in e.session.events if ev.kind == "stdout")
                err = "".join(ev.data for ev in e.session.events if ev.kind == "stderr")
                return self.ok({"exit_code": e.session.exit_code, "stdout": out, "stderr": err,
                                "error_message": None})
            finally:
                await self._remove(b)
        return await self.run(go())

    async def h_gc(self, request):
        async def go():
            raw = await request.read()
            older = 3600
            if raw:
                body = await self.body(request)
                if isinstance(body, dict) and body.get("older_than") is not None:
                    older = int(body["older_than"])
            import datetime as _dt
            now = utc_now()
            n = 0
            for b in list(self.boxes.values()):
                ts = None
                if b["status"] == "stopped" and b["stopped_at"]:
                    ts = b["stopped_at"]
                elif b["status"] == "error":
                    ts = b["created_at"]
                if ts and (now - _dt.datetime.fromisoformat(ts)).total_seconds() >= older:
                    await self._remove(b)
                    n += 1
            return self.ok({"removed": n})
        return await self.run(go())

    # ----------------------------------------------------------------- attach
    async def h_attach(self, request, box):
        ws = web.WebSocketResponse(autoping=True, heartbeat=self.cfg.keepalive)
        if not ws.can_prepare(request).ok:
            return self.err(400, "VALIDATION_ERROR", "WebSocket upgrade required")
        await ws.prepare(request)

        async def fail(code: str, message: str):
            await ws.send_str(json.dumps({"type": "error", "code": code, "message": message}))
            await ws.close()
            return ws

        try:
            b = self.find_box(box)
        except CErr as e:
            return await fail(e.code, e.message)
        if b["status"] != "running":
            return await fail("BOX_NOT_RUNNING", f"Box '{b['id']}' is not running")
        q = request.query
        shell = q.get("shell", "/bin/bash")
        try:
            cols, rows = int(q.get("cols", 80)), int(q.get("rows", 24))
        except ValueError:
            cols, rows = 80, 24
        term = q.get("term", "xterm-256color")
        try:
            e = await self._start_exec(b, {"cmd": [shell], "env": {"TERM": term}, "workdir": None,
                                           "timeout_ms": None}, tty=True)
        except CErr as x:
            return await fail(x.code, x.message)
        s = e.session
        try:
            await s.resize(cols, rows)
        except Exception:
            pass

        async def reader():
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.BINARY:
                    try:
                        await s.send_stdin(msg.data)
                    except Exception:
                        pass
                elif msg.type == WSMsgType.TEXT:
                    try:
                        ctl = json.loads(msg.data)
                        if ctl.get("type") == "resize":
                            await s.resize(int(ctl["cols"]), int(ctl["rows"]))
                    except Exception:
                        pass
                else:
                    return

        rt = asyncio.ensure_future(reader())
        pos = 0
        try:
            while True:
                if rt.done():
                    break
                await s.wait_for_events(pos, 0.5)
                while pos < len(s.events):
                    ev = s.events[pos]
                    pos += 1
                    if ev.kind == "exit":
                        code = ev.data.get("exit_code")
                        await ws.send_str(json.dumps({"type": "exit", "code": code}))
                        rt.cancel()
                        await ws.close()
                        return ws
                    await ws.send_bytes(ev.data.encode("utf-8"))
        finally:
            if not rt.done():
                rt.cancel()
            if not s.done:
                try:
                    await s.kill()  # client went away: the shell is killed
                except Exception:
                    pass
        return ws

    async def reset_boxes(self) -> int:
        n = 0
        for b in list(self.boxes.values()):
            await self._remove(b)
            n += 1
        return n


async def stall_until_disconnect(request, limit_s: float = 600.0) -> None:
    """The `stall` fault: send nothing while the client stays connected (bounded)."""
    waited = 0.0
    while waited < limit_s:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.1)
        waited += 0.1
