"""Option classes (constructible); results are ``_results.py``'s, conversions ``_conv.py``'s.

Argument checks imitate the pyo3 conversions of the real SDK: the same
exception types and, where they were observed, the same messages.
"""

from __future__ import annotations

import json
from typing import Any

from ._conv import (_check_seq, _rs_opt, conv_bool, conv_env, conv_instance, conv_instance_list, conv_int,
                    conv_str, conv_str_list)

# --------------------------------------------------------------------------
# options


class ImageRegistry:
    def __init__(self, host, transport="https", skip_verify=False, search=False,
                 username=None, password=None, bearer_token=None):
        self.host = conv_str("host", host, optional=False)
        self.transport = conv_str("transport", transport, optional=False)
        self.skip_verify = conv_bool("skip_verify", skip_verify, optional=False)
        self.search = conv_bool("search", search, optional=False)
        self.username = conv_str("username", username)
        self.password = conv_str("password", password)
        self.bearer_token = conv_str("bearer_token", bearer_token)

    def __repr__(self) -> str:
        return f"ImageRegistry(host={json.dumps(self.host)}, transport={self.transport})"


class Options:
    """Runtime options: ``home_dir`` (None → $BOXLITE_HOME or ~/.boxlite)."""

    def __init__(self, home_dir=None, image_registries=()):
        self.home_dir = conv_str("home_dir", home_dir)
        self.image_registries = conv_instance_list("image_registries", image_registries, ImageRegistry)

    def __repr__(self) -> str:
        return f"Options(home_dir={_rs_opt(self.home_dir)}, image_registries={self.image_registries!r})"


class OutboundNetworkSpec:
    def __init__(self, mode="enabled", allow_net=()):
        self.mode = conv_str("mode", mode, optional=False)
        self.allow_net = conv_str_list("allow_net", list(allow_net), optional=False)


class InboundNetworkSpec:
    def __init__(self, mode="disabled", allow_net=()):
        self.mode = conv_str("mode", mode, optional=False)
        self.allow_net = conv_str_list("allow_net", list(allow_net), optional=False)


class NetworkSpec:
    def __init__(self, outbound=None, inbound=None, mode=None, allow_net=None):
        self.outbound = conv_instance("outbound", outbound, OutboundNetworkSpec)
        self.inbound = conv_instance("inbound", inbound, InboundNetworkSpec)
        self.mode = conv_str("mode", mode)
        self.allow_net = conv_str_list("allow_net", allow_net)

    def __repr__(self) -> str:
        o = "None" if self.outbound is None else "Some(..)"
        i = "None" if self.inbound is None else "Some(..)"
        return f"NetworkSpec(outbound={o}, inbound={i})"


class SecurityOptions:
    def __init__(self, jailer_enabled=False, seccomp_enabled=False, max_open_files=None,
                 max_file_size=None, max_processes=None, max_memory=None, max_cpu_time=None,
                 network_enabled=True, close_fds=True):
        self.jailer_enabled = conv_bool("jailer_enabled", jailer_enabled, optional=False)
        self.seccomp_enabled = conv_bool("seccomp_enabled", seccomp_enabled, optional=False)
        self.max_open_files = conv_int("max_open_files", max_open_files, 0, 2**64 - 1)
        self.max_file_size = conv_int("max_file_size", max_file_size, 0, 2**64 - 1)
        self.max_processes = conv_int("max_processes", max_processes, 0, 2**64 - 1)
        self.max_memory = conv_int("max_memory", max_memory, 0, 2**64 - 1)
        self.max_cpu_time = conv_int("max_cpu_time", max_cpu_time, 0, 2**64 - 1)
        self.network_enabled = conv_bool("network_enabled", network_enabled, optional=False)
        self.close_fds = conv_bool("close_fds", close_fds, optional=False)

    @staticmethod
    def development() -> "SecurityOptions":
        return SecurityOptions()

    @staticmethod
    def standard() -> "SecurityOptions":
        return SecurityOptions(jailer_enabled=True, seccomp_enabled=True)

    @staticmethod
    def maximum() -> "SecurityOptions":
        return SecurityOptions(jailer_enabled=True, seccomp_enabled=True, max_open_files=1024,
                               max_processes=100)

    def __repr__(self) -> str:
        return (f"SecurityOptions(jailer_enabled={str(self.jailer_enabled).lower()}, "
                f"seccomp_enabled={str(self.seccomp_enabled).lower()}, "
                f"max_open_files={_rs_opt(self.max_open_files)})")


class HealthCheckOptions:
    def __init__(self, interval=30, timeout=10, retries=3, start_period=60):
        self.interval = conv_int("interval", interval, 0, 2**64 - 1, optional=False)
        self.timeout = conv_int("timeout", timeout, 0, 2**64 - 1, optional=False)
        self.retries = conv_int("retries", retries, 0, 2**32 - 1, optional=False)
        self.start_period = conv_int("start_period", start_period, 0, 2**64 - 1, optional=False)

    def __repr__(self) -> str:
        return (f"HealthCheckOptions(interval={self.interval}s, timeout={self.timeout}s, "
                f"retries={self.retries}, start_period={self.start_period}s)")


class ContainerCapabilities:
    def __init__(self, add=(), drop=()):
        self.add = conv_str_list("add", list(add), optional=False)
        self.drop = conv_str_list("drop", list(drop), optional=False)

    def __repr__(self) -> str:
        return f"ContainerCapabilities(add={self.add!r}, drop={self.drop!r})"


class AdvancedBoxOptions:
    def __init__(self, security=None, health_check=None, capabilities=None):
        self.security = conv_instance("security", security, SecurityOptions)
        self.health_check = conv_instance("health_check", health_check, HealthCheckOptions)
        self.capabilities = conv_instance("capabilities", capabilities, ContainerCapabilities)


class Secret:
    def __init__(self, name, value, hosts=(), placeholder=None):
        self.name = conv_str("name", name, optional=False)
        self.value = conv_str("value", value, optional=False)
        self.hosts = conv_str_list("hosts", list(hosts), optional=False)
        self.placeholder = conv_str("placeholder", placeholder) or f"<BOXLITE_SECRET:{self.name}>"

    def get_placeholder(self) -> str:
        return self.placeholder

    def __repr__(self) -> str:
        return (f"Secret(name={json.dumps(self.name)}, hosts={json.dumps(self.hosts)}, "
                f"placeholder={json.dumps(self.placeholder)}, value=[REDACTED])")


def _conv_volumes(v: Any) -> list[dict]:
    _check_seq("volumes", v)
    out = []
    for e in v:
        if isinstance(e, tuple):
            if len(e) not in (2, 3):
                raise RuntimeError("volumes tuples must be (host_path, guest_path[, read_only])")
            hp = conv_str("volumes", e[0], optional=False)
            gp = conv_str("volumes", e[1], optional=False)
            ro = conv_bool("volumes", e[2], optional=False) if len(e) == 3 else False
            out.append({"host_path": hp, "guest_path": gp, "read_only": ro})
        elif isinstance(e, dict):
            hp, mv = e.get("host_path"), e.get("managed_volume")
            if hp is not None and mv is not None:
                raise RuntimeError("volume dict takes managed_volume or host_path, not both")
            if hp is None and mv is None:
                raise RuntimeError("volume dict requires managed_volume or host_path")
            if "guest_path" not in e:
                raise RuntimeError("volume dict missing guest_path")
            out.append({"host_path": conv_str("volumes", hp), "managed_volume": conv_str("volumes", mv),
                        "guest_path": conv_str("volumes", e["guest_path"], optional=False),
                        "read_only": bool(conv_bool("volumes", e.get("read_only", False)))})
        else:
            raise RuntimeError("volumes entries must be tuple or dict")
    return out


def _conv_ports(v: Any) -> list[dict]:
    _check_seq("ports", v)
    out = []
    for e in v:
        if isinstance(e, tuple):
            if len(e) < 2 or len(e) > 4:
                raise RuntimeError("ports tuples must be (host, guest[, protocol[, host_ip]])")
            hp = conv_int("ports", e[0], 0, 65535, optional=False)
            gp = conv_int("ports", e[1], 0, 65535, optional=False)
            proto = conv_str("ports", e[2], optional=False) if len(e) > 2 else "tcp"
            hip = conv_str("ports", e[3], optional=False) if len(e) > 3 else None
            out.append({"host_port": hp, "guest_port": gp, "protocol": proto, "host_ip": hip})
        elif isinstance(e, dict):
            if "guest_port" not in e:
                raise RuntimeError("ports dict missing guest_port")
            out.append({"host_port": conv_int("ports", e.get("host_port"), 0, 65535),
                        "guest_port": conv_int("ports", e["guest_port"], 0, 65535, optional=False),
                        "protocol": conv_str("ports", e.get("protocol")) or "tcp",
                        "host_ip": conv_str("ports", e.get("host_ip"))})
        else:
            raise RuntimeError("ports entries must be tuple or dict")
    return out


class BoxOptions:
    """Options of a box; ``volumes`` and ``ports`` are write-only, as in the SDK."""

    def __init__(self, image=None, rootfs_path=None, cpus=None, memory_mib=None, disk_size_gb=None,
                 working_dir=None, env=(), volumes=(), network=None, ports=(), auto_remove=None,
                 auto_stop=None, auto_delete=None, auto_resume=None, detach=None, entrypoint=None,
                 cmd=None, user=None, tty=None, advanced=None, secrets=()):
        self.image = conv_str("image", image)
        self.rootfs_path = conv_str("rootfs_path", rootfs_path)
        self.cpus = conv_int("cpus", cpus, 0, 255)
        self.memory_mib = conv_int("memory_mib", memory_mib, 0, 2**32 - 1)
        self.disk_size_gb = conv_int("disk_size_gb", disk_size_gb, 0, 2**64 - 1)
        self.working_dir = conv_str("working_dir", working_dir)
        self.env = conv_env("env", env, optional=False)
        self._volumes = _conv_volumes(volumes)
        self.network = conv_instance("network", network, NetworkSpec)
        self._ports = _conv_ports(ports)
        self.auto_remove = conv_bool("auto_remove", auto_remove)
        self.auto_stop = conv_int("auto_stop", auto_stop, 0, 2**64 - 1)
        self.auto_delete = conv_int("auto_delete", auto_delete, 0, 2**64 - 1)
        self.auto_resume = conv_bool("auto_resume", auto_resume)
        self.detach = conv_bool("detach", detach)
        self.entrypoint = conv_str_list("entrypoint", entrypoint)
        self.cmd = conv_str_list("cmd", cmd)
        self.user = conv_str("user", user)
        self.tty = conv_bool("tty", tty)
        self.advanced = conv_instance("advanced", advanced, AdvancedBoxOptions)
        self.secrets = conv_instance_list("secrets", secrets, Secret)

    def _wo(name: str):  # noqa: N805 - helper building a write-only property
        def getter(self):
            raise AttributeError(f"'builtins.BoxOptions' object has no attribute '{name}'")

        def setter(self, value):
            setattr(self, "_" + name, _conv_volumes(value) if name == "volumes" else _conv_ports(value))

        return property(getter, setter)

    volumes = _wo("volumes")
    ports = _wo("ports")
    del _wo

    def __repr__(self) -> str:
        return (f"BoxOptions(image={_rs_opt(self.image)}, rootfs_path={_rs_opt(self.rootfs_path)}, "
                f"cpus={_rs_opt(self.cpus)}, memory_mib={_rs_opt(self.memory_mib)}, "
                f"advanced={str(self.advanced is not None).lower()})")


class CopyOptions:
    def __init__(self, recursive=True, overwrite=True, follow_symlinks=False):
        self.recursive = conv_bool("recursive", recursive, optional=False)
        self.overwrite = conv_bool("overwrite", overwrite, optional=False)
        self.follow_symlinks = conv_bool("follow_symlinks", follow_symlinks, optional=False)


class CloneOptions:
    def __init__(self):
        pass


class ExportOptions:
    def __init__(self):
        pass


class SnapshotOptions:
    def __init__(self):
        pass


class SocketAddress:
    def __init__(self, *a, **k):
        raise TypeError("No constructor defined for SocketAddress")

    @classmethod
    def _new(cls, kind, host=None, port=None, path=None):
        obj = cls.__new__(cls)
        obj.kind, obj.host, obj.port, obj.path = kind, host, port, path
        return obj

    @classmethod
    def tcp(cls, host="127.0.0.1", port=0):
        return cls._new("tcp", conv_str("host", host, optional=False),
                        conv_int("port", port, 0, 65535, optional=False))

    @classmethod
    def unix(cls, path):
        return cls._new("unix", path=conv_str("path", path, optional=False))

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else f"unix:{self.path}"


class ApiKeyCredential:
    def __init__(self, key):
        self._key = conv_str("key", key, optional=False)

    @staticmethod
    def from_env():
        import os
        return ApiKeyCredential(os.environ.get("BOXLITE_API_KEY", ""))

    def get_token(self):
        return self._key

    def __repr__(self) -> str:
        return "ApiKeyCredential([REDACTED])"


class BoxliteRestOptions:
    def __init__(self, url, credential=None, path_prefix=None):
        self.url = conv_str("url", url, optional=False)
        self.credential = credential
        self.path_prefix = conv_str("path_prefix", path_prefix)

    @staticmethod
    def from_env():
        import os
        return BoxliteRestOptions(os.environ.get("BOXLITE_REST_URL", ""))

    def __repr__(self) -> str:
        return f"BoxliteRestOptions(url={json.dumps(self.url)})"




def _constructor_names(*classes: type) -> None:
    """Make argument errors name ``X.__new__()`` like pyo3 constructors do."""
    for cls in classes:
        cls.__init__.__qualname__ = f"{cls.__name__}.__new__"
        code = cls.__init__.__code__
        if hasattr(code, "co_qualname"):  # 3.11+ reports the code object's name
            cls.__init__.__code__ = code.replace(co_qualname=f"{cls.__name__}.__new__")


_constructor_names(ImageRegistry, Options, OutboundNetworkSpec, InboundNetworkSpec, NetworkSpec, SecurityOptions,
                   HealthCheckOptions, ContainerCapabilities, AdvancedBoxOptions, Secret, BoxOptions, CopyOptions,
                   CloneOptions, ExportOptions, SnapshotOptions, ApiKeyCredential, BoxliteRestOptions)
