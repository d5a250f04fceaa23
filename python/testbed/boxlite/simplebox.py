"""``SimpleBox``: the SDK's convenience wrapper, re-implemented over the simulator.

Behaviour per the 0.10.8 surface: options are built eagerly (bad keywords
fail at construction), ``runtime=None`` means ``Boxlite.default()``, entering
creates (or with ``reuse_existing`` gets-or-creates) and starts the box,
leaving stops it (which deletes it with the default ``auto_remove=True``),
and ``exec`` drains both streams concurrently into an ``ExecResult``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from ._runtime import Boxlite
from ._types import BoxOptions, CopyOptions
from .exec import ExecResult

log = logging.getLogger(__name__)


class SimpleBox:
    def __init__(self, image: Optional[str] = None, rootfs_path: Optional[str] = None,
                 memory_mib: Optional[int] = None, cpus: Optional[int] = None, runtime: Optional[Boxlite] = None,
                 name: Optional[str] = None, auto_remove: bool = True, reuse_existing: bool = False, **kwargs):
        self._runtime = runtime if runtime is not None else Boxlite.default()
        self._name = name
        self._reuse = reuse_existing
        self._options = BoxOptions(image=image, rootfs_path=rootfs_path, memory_mib=memory_mib, cpus=cpus,
                                   auto_remove=auto_remove, **kwargs)
        self._box = None
        self._started = False
        self._created: Optional[bool] = None

    async def start(self) -> "SimpleBox":
        if self._started:
            return self
        if self._box is None:
            if self._reuse:
                self._box, self._created = await self._runtime.get_or_create(self._options, name=self._name)
            else:
                self._box = await self._runtime.create(self._options, name=self._name)
                self._created = True
        await self._box.start()
        self._started = True
        return self

    async def __aenter__(self) -> "SimpleBox":
        return await self.start()

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        if self._box is not None and self._started:
            await self._box.stop()
            self._started = False
        return None

    def _require(self):
        if not self._started or self._box is None:
            raise RuntimeError("Box not started. Use 'async with SimpleBox(...) as box:' or call 'await box.start()'")
        return self._box

    @property
    def id(self) -> str:
        return self._require().id

    @property
    def name(self) -> Optional[str]:
        return self._box.name if self._box is not None else self._name

    @property
    def created(self) -> Optional[bool]:
        return self._created

    async def info(self):
        return await self._require().info()

    async def metrics(self):
        return await self._require().metrics()

    async def stop(self) -> None:
        await self._require().stop()
        self._started = False

    async def shutdown(self) -> None:
        """Alias of ``stop()``."""
        await self.stop()

    @property
    def network(self):
        if self._box is None:
            raise RuntimeError("Box not created")
        return self._box.network

    async def tunnel(self, port: int):
        if self._box is None:
            raise RuntimeError("Box not created")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError("port must be an integer between 1 and 65535")
        return await self._box.network.tunnel(port)

    async def copy_in(self, host_path: str, container_dest: str, *, overwrite: bool = True,
                      follow_symlinks: bool = False) -> None:
        box = self._require()
        opts = CopyOptions(recursive=True, overwrite=overwrite, follow_symlinks=follow_symlinks)
        await box.copy_in(host_path, container_dest, opts)

    async def copy_out(self, container_src: str, host_dest: str, *, overwrite: bool = True,
                       follow_symlinks: bool = False) -> None:
        box = self._require()
        opts = CopyOptions(recursive=True, overwrite=overwrite, follow_symlinks=follow_symlinks)
        await box.copy_out(container_src, host_dest, opts)

    async def exec(self, cmd: str, *args: str, env: Optional[dict] = None, user: Optional[str] = None,
                   timeout: Optional[float] = None, cwd: Optional[str] = None) -> ExecResult:
        box = self._require()
        env_list = list(env.items()) if env else None
        execution = await box.exec(cmd, list(args), env_list, user=user, timeout_secs=timeout, cwd=cwd)

        async def collect(stream) -> str:
            parts = []
            async for chunk in stream:
                parts.append(chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk)
            return "".join(parts)

        out, err = await asyncio.gather(collect(execution.stdout()), collect(execution.stderr()))
        try:
            res = await execution.wait()
            return ExecResult(exit_code=res.exit_code, stdout=out, stderr=err, error_message=res.error_message)
        except Exception as e:  # the SDK logs and reports -1 instead of raising
            log.error("exec wait failed: %s", e)
            return ExecResult(exit_code=-1, stdout=out, stderr=err, error_message=str(e))
