"""The routes over what is inside a box that the BoxLite REST dialects (SSE era and current)
share: snapshots, clone, export and import, executions, files, metrics and the reset used by
tests. A base of ``dialect_rest.RestDialect``, which supplies the plumbing (errors, bodies,
backend).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .core import ExecSession, env_tuples
from .files import ArchiveError, download_tar, upload_tar
from .rest_checks import ApiError, PlainError, str_list, str_map, check_fields, qbool


class RestBoxOperations:
    """Snapshot, clone, export/import, exec, file and metrics routes of ``RestDialect``."""

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
        args = str_list(body.get("args"), "args")
        env = str_map(body.get("env"), "env")
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
