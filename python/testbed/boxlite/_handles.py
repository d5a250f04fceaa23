"""Handles the runtime and boxes hand out besides boxes themselves: images, registries and
volumes (not simulated), snapshots and networks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from typing import TYPE_CHECKING

from . import _sandbox, errors
from ._conv import conv_instance, conv_int, conv_str
from ._core_io import _new_id
from ._engine import submit
from ._results import SnapshotInfo
from ._types import SnapshotOptions

if TYPE_CHECKING:
    from ._box import Box


class ImageHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.ImageHandle' instances")

    @classmethod
    def _new(cls, core):
        o = cls.__new__(cls)
        o._core = core
        return o

    def list(self):
        return submit(_async_value([]))

    def get(self, name):
        conv_str("name", name, optional=False)
        return submit(_async_value(None))

    def pull(self, reference):
        ref = conv_str("reference", reference, optional=False)

        async def run():
            raise errors.ImageError.make(f"the simulator cannot pull images ({ref})")
        return submit(run)

    def remove(self, name):
        return submit(_async_raise(errors.UnsupportedError.make("image removal is not supported by the simulator")))

    def usage(self):
        return submit(_async_raise(errors.UnsupportedError.make(
            "image usage counts a server's catalog against its limit; an embedded runtime has a local cache "
            "with no limit")))

    def create_alias(self, name, alias, digest):
        return submit(_async_raise(errors.UnsupportedError.make(
            "creating an alias requires a server's catalog; an embedded runtime has a local cache, which "
            "resolves a tag afresh for each new box")))

    def delete_alias(self, name, alias):
        return submit(_async_raise(errors.UnsupportedError.make("alias deletion requires a server catalog")))

    @property
    def registries(self):
        return RegistryHandle._new()

    def __repr__(self):
        return "ImageHandle(local)"


class RegistryHandle:
    """Registry logins: REST runtimes only; every call fails locally."""

    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.RegistryHandle' instances")

    @classmethod
    def _new(cls):
        return cls.__new__(cls)

    def _unsupported(self):
        return submit(_async_raise(errors.UnsupportedError.make(
            "registry logins require a REST image catalog; local runtimes use image_registries in their options")))

    def create(self, *, registry_host, username, password, repository_prefix=None):
        return self._unsupported()

    def list(self):
        return self._unsupported()

    def remove(self, id):  # noqa: A002
        return self._unsupported()

    def __repr__(self):
        return "RegistryHandle(local)"


class VolumeHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.VolumeHandle' instances")

    @classmethod
    def _new(cls, core):
        o = cls.__new__(cls)
        o._core = core
        return o

    def _unsupported(self):
        return submit(_async_raise(errors.UnsupportedError.make("named volumes are not supported yet")))

    def list(self):
        return self._unsupported()

    def create(self, name=None):
        return self._unsupported()

    def get(self, id):  # noqa: A002
        return self._unsupported()

    def remove(self, id, force=False):  # noqa: A002
        return self._unsupported()

    def __repr__(self):
        return "VolumeHandle(local)"


def _async_value(v):
    async def run():
        return v
    return run


def _async_raise(exc):
    async def run():
        raise exc
    return run


# ---------------------------------------------------------------------------
# snapshots


_SNAP_BAD = ("/", "\\", "\x00")


def _check_snapshot_name(name: str) -> None:
    if (not name or any(c in name for c in _SNAP_BAD) or name.startswith(".") or len(name) > 255):
        raise errors.InvalidArgumentError.make(
            f"invalid snapshot name '{name}': must be 1-255 characters, must not start with '.', "
            "and must not contain '/', '\\' or NUL")


class SnapshotHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.SnapshotHandle' instances")

    @classmethod
    def _new(cls, box: Box) -> "SnapshotHandle":
        h = cls.__new__(cls)
        h._box = box
        return h

    def __repr__(self) -> str:
        return f'SnapshotHandle(box_id="{self._box._id}")'

    @staticmethod
    def _info(box_id: str, s: dict) -> SnapshotInfo:
        return SnapshotInfo._make(id=s["id"], box_id=box_id, name=s["name"], created_at=s["created_at"],
                                  size_bytes=s["size_bytes"], container_disk_bytes=s["container_disk_bytes"])

    def create(self, *args, options=None, name=None):
        if args:
            raise TypeError(f"SnapshotHandle.create() takes 0 positional arguments but {len(args)} "
                            f"{'was' if len(args) == 1 else 'were'} given")
        if name is None:
            raise TypeError("SnapshotHandle.create() missing 1 required keyword argument: 'name'")
        conv_instance("options", options, SnapshotOptions)
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            _check_snapshot_name(name)
            if not core.has_disk(box_id):
                raise errors.StorageError.make("Failed to write snapshot marker: No such file or directory (os error 2)")
            if any(s["name"] == name for s in rec["snapshots"]):
                raise errors.AlreadyExistsError.make(f"snapshot '{name}' already exists for box '{box_id}'")
            sdir = os.path.join(core.box_dir(box_id), "snapshots", name)

            def work():
                if os.path.exists(sdir):
                    shutil.rmtree(sdir)
                os.makedirs(sdir)
                shutil.copytree(core.disk(box_id), os.path.join(sdir, "disk"), symlinks=True)
                return _sandbox.tree_size(os.path.join(sdir, "disk"))
            async with core.lock_for(box_id):
                size = await asyncio.get_running_loop().run_in_executor(None, work)
            snap = {"id": _new_id(8), "name": name, "created_at": int(time.time()), "created_ns": time.time_ns(),
                    "size_bytes": size, "container_disk_bytes": size}
            rec["snapshots"].append(snap)
            rec["current_snapshot"] = name
            core.save(rec)
            return self._info(box_id, snap)
        return submit(run)

    def list(self):
        core, box_id = self._box._core, self._box._id

        async def run():
            rec = core.records.get(box_id)
            if rec is None:
                return []
            snaps = sorted(rec["snapshots"], key=lambda s: s["created_ns"], reverse=True)
            return [self._info(box_id, s) for s in snaps]
        return submit(run)

    def get(self, name):
        name = conv_str("name", name, optional=False)
        core, box_id = self._box._core, self._box._id

        async def run():
            rec = core.records.get(box_id)
            for s in (rec or {}).get("snapshots", []):
                if s["name"] == name:
                    return self._info(box_id, s)
            return None
        return submit(run)

    def restore(self, name):
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            if rec["status"] in ("running", "stopping"):
                raise errors.InvalidStateError.make("Cannot restore snapshot while box is running. Stop the box first.")
            if not any(s["name"] == name for s in rec["snapshots"]):
                raise errors.NotFoundError.make(f"snapshot '{name}' not found for box '{box_id}'")
            sdisk = os.path.join(core.box_dir(box_id), "snapshots", name, "disk")

            def work():
                disk = core.disk(box_id)
                if os.path.exists(disk):
                    shutil.rmtree(disk)
                shutil.copytree(sdisk, disk, symlinks=True)
            async with core.lock_for(box_id):
                await asyncio.get_running_loop().run_in_executor(None, work)
            rec["current_snapshot"] = name
            core.save(rec)
            return ()
        return submit(run)

    def remove(self, name):
        name = conv_str("name", name, optional=False)
        box = self._box
        core, box_id = box._core, box._id

        async def run():
            rec = box._checked()
            snap = next((s for s in rec["snapshots"] if s["name"] == name), None)
            if snap is None:
                raise errors.NotFoundError.make(f"snapshot '{name}' not found for box '{box_id}'")
            if rec.get("current_snapshot") == name:
                raise errors.InvalidStateError.make(
                    "Cannot remove snapshot: current disk depends on this snapshot. Restore a different snapshot first.")
            sdir = os.path.join(core.box_dir(box_id), "snapshots", name)
            await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(sdir, ignore_errors=True))
            rec["snapshots"] = [s for s in rec["snapshots"] if s["name"] != name]
            core.save(rec)
            return ()
        return submit(run)


class NetworkHandle:
    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.NetworkHandle' instances")

    @classmethod
    def _new(cls, box: Box) -> "NetworkHandle":
        h = cls.__new__(cls)
        h._box = box
        return h

    def tunnel(self, port):
        port = conv_int("port", port, 0, 65535, optional=False)
        box = self._box

        async def run():
            from ._tunnel import BoxTunnel
            if port == 0:
                raise errors.InvalidArgumentError.make("tunnel port must be non-zero")
            box._checked()
            await box._core.start(box._id)
            return BoxTunnel._new(port)
        return submit(run)

    def revoke_tunnel(self, port):
        conv_int("port", port, 0, 65535, optional=False)
        return submit(_async_value(()))

    def update_outbound(self, spec):
        box = self._box

        async def run():
            rec = box._core.records.get(box._id)
            if rec is None or rec["status"] != "running":
                raise errors.InvalidStateError.make("outbound policy updates require a running box")
            rec = box._checked()
            rec["network"]["outbound"] = {"mode": spec.mode, "allow_net": list(spec.allow_net)}
            box._core.save(rec)
            return ()
        return submit(run)

    def update_inbound(self, spec):
        return submit(_async_raise(errors.UnsupportedError.make(
            "this backend does not support inbound policy updates")))
