"""Result classes (read-only records, not constructible from Python, like pyo3 classes) and
the health state enum.
"""

from __future__ import annotations

import json
from typing import Any


class _Result:
    """Read-only record; instances cannot be created from Python."""

    _fields: tuple[str, ...] = ()

    def __init__(self, *a: Any, **k: Any) -> None:
        raise TypeError(f"cannot create 'builtins.{type(self).__name__}' instances")

    @classmethod
    def _make(cls, **values: Any) -> Any:
        obj = cls.__new__(cls)
        for f in cls._fields:
            object.__setattr__(obj, "_v_" + f, values.get(f))
        return obj

    def __getattr__(self, name: str) -> Any:
        if name in type(self)._fields:
            return object.__getattribute__(self, "_v_" + name)
        raise AttributeError(f"'builtins.{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"attribute '{name}' of 'builtins.{type(self).__name__}' objects is not writable")

    def _to_json(self) -> Any:
        out = {}
        for f in type(self)._fields:
            v = getattr(self, f)
            out[f] = _jsonable(v)
        return out

    def __repr__(self) -> str:
        return json.dumps(self._to_json(), indent=2, sort_keys=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, _Result):
        return v._to_json()
    if isinstance(v, HealthState):
        return v.value
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class HealthState:
    _VALUES = ("none", "starting", "healthy", "unhealthy")

    def __init__(self, *a, **k):
        raise TypeError("cannot create 'builtins.HealthState' instances")

    @classmethod
    def _of(cls, value: str) -> "HealthState":
        obj = cls.__new__(cls)
        obj._value = value
        return obj

    @property
    def value(self) -> str:
        return self._value

    @staticmethod
    def none():
        return HealthState._of("none")

    @staticmethod
    def starting():
        return HealthState._of("starting")

    @staticmethod
    def healthy():
        return HealthState._of("healthy")

    @staticmethod
    def unhealthy():
        return HealthState._of("unhealthy")

    def is_none(self):
        return self._value == "none"

    def is_starting(self):
        return self._value == "starting"

    def is_healthy(self):
        return self._value == "healthy"

    def is_unhealthy(self):
        return self._value == "unhealthy"

    def __eq__(self, other):
        return isinstance(other, HealthState) and other._value == self._value

    def __hash__(self):
        return hash(self._value)

    def __str__(self):
        return self._value

    def __repr__(self):
        return f"<HealthState: {self._value}>"


class HealthStatus(_Result):
    _fields = ("state", "failures", "last_check")


class BoxStateInfo(_Result):
    _fields = ("status", "running", "pid", "exit_code")


class OutboundNetworkInfo(_Result):
    _fields = ("mode", "allow_net")


class InboundNetworkInfo(_Result):
    _fields = ("mode", "allow_net")


class PublishedPort(_Result):
    _fields = ("guest_port", "host_ip", "host_port", "protocol")


class NetworkInfo(_Result):
    _fields = ("outbound", "inbound", "published_ports")

    @property
    def mode(self):
        return self.outbound.mode if self.outbound is not None else None

    @property
    def allow_net(self):
        return self.outbound.allow_net if self.outbound is not None else None


class BoxInfo(_Result):
    _fields = ("id", "name", "state", "created_at", "started_at", "last_activity_at", "image", "cpus",
               "memory_mib", "network", "auto_stop", "auto_delete", "auto_resume", "health_status")


class BoxMetrics(_Result):
    _fields = ("commands_executed_total", "exec_errors_total", "bytes_sent_total", "bytes_received_total",
               "total_create_duration_ms", "guest_boot_duration_ms", "cpu_percent", "memory_bytes",
               "network_bytes_sent", "network_bytes_received", "network_tcp_connections",
               "network_tcp_errors", "stage_filesystem_setup_ms", "stage_image_prepare_ms",
               "stage_guest_rootfs_ms", "stage_box_config_ms", "stage_box_spawn_ms",
               "stage_container_init_ms")

    def __repr__(self) -> str:
        return (f"BoxMetrics(commands={self.commands_executed_total}, errors={self.exec_errors_total}, "
                f"bytes_sent={self.bytes_sent_total}, bytes_received={self.bytes_received_total})")


class RuntimeMetrics(_Result):
    _fields = ("boxes_created_total", "boxes_failed_total", "num_running_boxes", "total_commands_executed",
               "total_exec_errors")

    def __repr__(self) -> str:
        return (f"RuntimeMetrics(boxes_created={self.boxes_created_total}, "
                f"boxes_failed={self.boxes_failed_total}, running={self.num_running_boxes}, "
                f"commands={self.total_commands_executed}, errors={self.total_exec_errors})")


class SnapshotInfo(_Result):
    _fields = ("id", "box_id", "name", "created_at", "size_bytes", "container_disk_bytes")


class ImageInfo(_Result):
    _fields = ("id", "reference", "repository", "tag", "size_bytes", "cached_at")


class VolumeInfo(_Result):
    _fields = ("id", "name", "size_bytes", "created_at")


class AccessToken(_Result):
    _fields = ("token", "expires_at")


class ImageAliasEvent(_Result):
    _fields = ("alias", "from_digest", "to_digest", "actor", "recorded_at")


class ImageVersion(_Result):
    _fields = ("digest", "source_ref", "size_bytes", "recorded_at", "last_used_at", "upstream_missing_at",
               "aliases")


class ImageDetail(_Result):
    _fields = ("name", "curated", "versions", "aliases", "history")


class ImagePullResult(_Result):
    _fields = ("reference", "config_digest", "layer_count")


class ImageUsage(_Result):
    _fields = ("count", "known_bytes", "limit")


class RegistryCredential(_Result):
    _fields = ("id", "registry_host", "repository_prefix", "username", "created_at", "created_by")
