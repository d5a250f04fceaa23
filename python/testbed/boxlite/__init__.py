"""boxlite — SIMULATOR (test double) of the boxlite 0.10.8 Python SDK.

This package is NOT BoxLite: it boots no micro-VM and gives no VM
isolation.  Each box is a bubblewrap sandbox over the host's read-only
``/usr`` and ``/etc`` with a private writable root, so commands really run,
files really move, and the SDK's calling convention, states, errors and
quirks are reproduced for tests.  ``boxlite.__testbed__`` is True.
"""

from . import errors
from ._exec import ExecStderr, ExecStdin, ExecStdout, Execution
from ._box import Box
from ._handles import ImageHandle, NetworkHandle, RegistryHandle, SnapshotHandle, VolumeHandle
from ._runtime import Boxlite
from ._results import (AccessToken, BoxInfo, BoxMetrics, BoxStateInfo, HealthState, HealthStatus, ImageAliasEvent,
                       ImageDetail, ImageInfo, ImagePullResult, ImageUsage, ImageVersion, InboundNetworkInfo,
                       NetworkInfo, OutboundNetworkInfo, PublishedPort, RegistryCredential, RuntimeMetrics,
                       SnapshotInfo, VolumeInfo)
from ._types import (AdvancedBoxOptions, ApiKeyCredential, BoxliteRestOptions, BoxOptions, CloneOptions,
                     ContainerCapabilities, CopyOptions, ExportOptions, HealthCheckOptions, ImageRegistry,
                     InboundNetworkSpec, NetworkSpec, Options, OutboundNetworkSpec, Secret, SecurityOptions,
                     SnapshotOptions, SocketAddress)
from .credential import Credential
from .errors import *  # noqa: F401,F403 - the SDK re-exports every error class
from .errors import __all__ as _error_types
from .exec import ExecResult
from ._tunnel import BoxConnection, BoxTunnel, TunnelForwarder

__version__ = "0.10.8"
__testbed__ = True

__all__ = [
    "Options", "AdvancedBoxOptions", "ContainerCapabilities", "ImageRegistry", "BoxOptions",
    "BoxliteRestOptions", "ApiKeyCredential", "Boxlite", "NetworkSpec", "OutboundNetworkSpec",
    "InboundNetworkSpec", "NetworkHandle", "SocketAddress", "NetworkInfo", "OutboundNetworkInfo",
    "InboundNetworkInfo", "Box", "Execution", "ExecStdout", "ExecStderr", "ImageHandle", "ImageInfo",
    "BoxInfo", "BoxStateInfo", "HealthState", "HealthStatus", "RuntimeMetrics", "PublishedPort", "BoxMetrics",
    "CopyOptions", "HealthCheckOptions", "SecurityOptions", "Secret", "SnapshotHandle", "SnapshotInfo",
    "SnapshotOptions", "CloneOptions", "ExportOptions", "VolumeHandle", "VolumeInfo", "TunnelForwarder",
    "ImagePullResult", "ImageDetail", "ImageVersion", "ImageAliasEvent", "ImageUsage", "RegistryHandle",
    "RegistryCredential", "AccessToken", "Credential", "SimpleBox", "ExecResult", *_error_types,
]

from .simplebox import SimpleBox  # noqa: E402

_ = (errors, ExecStdin, BoxConnection, BoxTunnel)  # not re-exported by the SDK either
