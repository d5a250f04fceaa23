"""Glue between the Rust engine (local/engine.rs) and the boxlite SDK: the state every part of
the bridge shares (the SDK module, the loop, the tables of runtimes, handles, executions and
running jobs), the limits they work within, and the errors the Rust side maps by name.

The bridge is loaded by the engine in dependency order, each part as `boxlite_bridge.<part>`:
state, jobs (start-up and dispatch), runtimes, boxes, execs, files, then `boxlite_bridge` itself
(metrics, self-tests and the table of ops). See docs/local-engine.md.

Everything runs on the one `py-asyncio` thread, inside its persistent event loop: the SDK's
methods return Futures bound to the loop that is running when they are called, so no SDK method
is ever called from another thread. Rust submits jobs without taking the GIL (a queue plus one
byte on a socketpair); `jobs._drain` turns each job into a task of one of the `op_*` coroutines
and reports the outcome through the job's `done` callback as plain data (JSON text and bytes), so
no Python object ever crosses to Rust threads.
"""

# The SDK module, or the exception that importing it raised (reported on first use).
sdk = None
sdk_import_error = None

# The oldest SDK local mode supports; set from the Rust side's constant by `setup`.
MIN_SDK = (0, 10, 0)

# The event loop of the `py-asyncio` thread; created by `jobs.setup`.
loop = None

# op name (without the `op_` prefix) -> coroutine function; filled by the entry module.
OPS = {}

# boxliteHome -> [Boxlite runtime, number of clients using it]
RUNTIMES = {}
# execution id -> ExecRecord
EXECS = {}
# (boxliteHome, box id or name as the caller gave it) -> SDK box handle. `rt.get` per call costs
# a round trip to the SDK's engine; a handle stays valid until the box stops (then the SDK
# refuses it with "Handle invalidated", and `_use_box` fetches a fresh one).
HANDLES = {}

# Jobs still running: task -> (boxliteHome or None, op name, box id or None). A runtime is shut
# down only once no job uses it any more (a job holding it keeps the home locked).
JOBS = {}
# How long release and delete wait for the jobs they cancel to settle.
CANCEL_WAIT_S = 10.0
# Lifecycle jobs a force-delete of their box makes moot (they may wait long on the VM).
LIFECYCLE_OPS = ("start_box", "stop_box")

# How long release waits for the SDK to let go of the home's lock after the runtime is dropped.
HOME_FREE_WAIT_S = 10.0

# How long killing an execution may take before the bridge stops waiting for the SDK.
KILL_WAIT_S = 10.0
# How long a finished execution stays readable through get_exec_output.
FINISHED_EXEC_TTL_S = 600.0
# Upper bounds of one exec_next batch (the Rust side merges the chunks).
BATCH_EVENTS = 512
BATCH_BYTES = 1 << 20
# Output an execution keeps for readers that replay it (get_exec_output, terminals): the most
# recent bytes only, so a terminal open for hours holds a bounded amount (older output is
# dropped once the log passes the limit; a reader that far behind resumes at the oldest kept).
REPLAY_LIMIT_BYTES = 4 << 20


class BridgeNotFound(Exception):
    """A box, execution or snapshot the caller named does not exist."""

    def __init__(self, what, ident):
        super().__init__(f"{what} '{ident}' not found")
        self.extra = {"what": what, "id": ident}


class BridgeTimeout(Exception):
    """An exec ran past its timeout and was killed."""

    def __init__(self, operation, after_ms):
        super().__init__(f"{operation} timed out after {after_ms} ms")
        self.extra = {"operation": operation, "after_ms": after_ms}


class EnvironmentProblem(Exception):
    """The Python environment cannot run the SDK; the message says what to do."""
