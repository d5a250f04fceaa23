"""The `boxrun` dialect's routes over what runs and is stored in a box: executions (and their
event streams), files, run / gc and the attach WebSocket. A base of
``dialect_boxrun.BoxRunDialect``, which supplies routing, auth and the box helpers.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shutil
import tempfile
from typing import Any, Optional

from aiohttp import WSMsgType, web

from .boxrun_common import NANOID, CErr, CExec, deser_error, split_action, stall_until_disconnect
from .core import ExecSession, env_tuples, new_id, utc_now


class BoxRunProcessRoutes:
    """Exec, file, run / gc and attach routes of ``BoxRunDialect``."""

    # ----------------------------------------------------------------- execs
    def _validate_exec(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise deser_error("invalid type: expected struct ExecRequest")
        if "cmd" not in body or body["cmd"] is None:
            raise deser_error("missing field `cmd`")
        cmd = body["cmd"]
        if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
            raise deser_error("cmd: invalid type: expected a sequence of strings")
        if not cmd:
            raise CErr(422, "VALIDATION_ERROR", "cmd must not be empty")
        env = body.get("env")
        if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
            raise deser_error("env: invalid type: expected a map of strings")
        wd = body.get("workdir")
        if wd is not None:
            if not isinstance(wd, str):
                raise deser_error("workdir: invalid type: expected a string")
            if not wd.startswith("/"):
                raise CErr(422, "VALIDATION_ERROR", "workdir must be an absolute path")
        t = body.get("timeout_ms")
        if t is not None:
            if not isinstance(t, int) or isinstance(t, bool):
                raise deser_error("timeout_ms: invalid type: expected u64")
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
            key, action = split_action(eid, "':cancel'")
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
                raise deser_error("missing field `path`")
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
                raise deser_error("invalid type: expected struct RunRequest")
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
