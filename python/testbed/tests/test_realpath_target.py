"""BOXLITE_TEST_TARGET resolution (python/testbed/realpath/target.py) and its Node twin."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

TESTBED_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(TESTBED_DIR))
if TESTBED_DIR not in sys.path:
    sys.path.insert(0, TESTBED_DIR)

from realpath import target as T  # noqa: E402

NODE_HELPER = os.path.join(REPO_ROOT, "__test__", "helpers", "target.mjs")


def fake_probe(line: str, code: int):
    calls = []

    def probe(python, rootfs, env):
        calls.append((python, rootfs))
        return T.ProbeResult(line, code)

    probe.calls = calls
    return probe


def clean_env(**kw) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOXLITE_",))}
    env.update(kw)
    return env


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("value,expected", [
    (None, "sim"), ("", "sim"), ("  ", "sim"), ("sim", "sim"), ("SIM", "sim"),
    ("real-sdk", "real-sdk"), ("real_sdk", "real-sdk"), (" Real-SDK ", "real-sdk"),
    ("remote", "remote"),
])
def test_parse_target(value, expected):
    assert T.parse_target(value) == expected


@pytest.mark.parametrize("value", ["real", "simulator", "local", "remote-sdk", "1"])
def test_unknown_target_is_an_error_not_a_silent_sim(value):
    with pytest.raises(T.TargetError, match="BOXLITE_TEST_TARGET"):
        T.parse_target(value)
    with pytest.raises(T.TargetError):
        T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET=value), probe=fake_probe("yes: x", 0))


@pytest.mark.parametrize("value,expected", [
    (None, "auto"), ("", "auto"), ("sse", "sse"), ("CURRENT", "current"), ("boxrun", "boxrun"),
    ("a", "sse"), ("b", "current"), ("c", "boxrun"), ("auto", "auto"),
])
def test_parse_dialect(value, expected):
    assert T.parse_dialect(value) == expected


def test_unknown_dialect_is_an_error():
    with pytest.raises(T.TargetError, match="BOXLITE_API_DIALECT"):
        T.parse_dialect("graphql")


# ---------------------------------------------------------------- sim


def test_sim_is_default_and_never_probes():
    probe = fake_probe("no: should not be called", 1)
    t = T.resolve_test_target(clean_env(), probe=probe)
    assert t.target == "sim" and not t.skip and t.reason == "" and not t.is_real
    assert probe.calls == []
    assert t.python


def test_sim_python_override_and_server_command():
    t = T.resolve_test_target(clean_env(BOXLITE_SIM_PYTHON="/opt/py/bin/python"))
    assert t.python == "/opt/py/bin/python"
    argv, env = t.server_command("--dialect", "current")
    assert argv == ["/opt/py/bin/python", "-m", "boxlite_testbed.server", "--dialect", "current"]
    assert env == {"PYTHONPATH": TESTBED_DIR}


def test_rootfs_and_image():
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_ROOTFS="rel/dir"))
    assert t.rootfs == os.path.abspath("rel/dir") and t.image == t.rootfs
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_ROOTFS="/r", BOXLITE_TEST_IMAGE="debian:12"))
    assert (t.rootfs, t.image) == ("/r", "debian:12")


# ---------------------------------------------------------------- real-sdk


def test_real_sdk_skips_with_the_probe_line():
    line = "no: /dev/kvm is a nested PVM hypervisor: boxlite guests die with KVM_EXIT_INTERNAL_ERROR"
    probe = fake_probe(line, 1)
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="real-sdk", BOXLITE_TEST_ROOTFS="/x/oci"),
                              probe=probe)
    assert t.target == "real-sdk" and t.skip and t.reason == line and t.is_real
    assert probe.calls == [(T.REAL_VENV_PYTHON, "/x/oci")]


def test_real_sdk_runs_when_the_probe_says_yes():
    probe = fake_probe("yes: booted a boxlite VM in 2.1s", 0)
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="real-sdk", BOXLITE_TEST_PYTHON="/v/bin/python"),
                              probe=probe)
    assert not t.skip and t.reason.startswith("yes:") and t.python == "/v/bin/python"
    assert probe.calls == [("/v/bin/python", None)]
    argv, env = t.server_command("--dialect", "sse")
    assert argv == ["/v/bin/python", T.RUN_SERVER, "--dialect", "sse"] and env == {}


@pytest.mark.parametrize("line,code", [("yes: but exit 1", 1), ("no: but exit 0", 0), ("", 0)])
def test_real_sdk_needs_both_yes_and_exit_0(line, code):
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="real-sdk"), probe=fake_probe(line, code))
    assert t.skip


def test_require_vm_turns_skip_into_error():
    with pytest.raises(T.TargetError, match="no: nope"):
        T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="real-sdk", BOXLITE_TEST_REQUIRE_VM="1"),
                              probe=fake_probe("no: nope", 1))


def test_skip_unless_runnable_uses_the_reason():
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="real-sdk"), probe=fake_probe("no: why", 1))
    with pytest.raises(pytest.skip.Exception, match="no: why"):
        T.skip_unless_runnable(t)
    ok = T.resolve_test_target(clean_env())
    assert T.skip_unless_runnable(ok) is ok


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_run_probe_contract(tmp_path):
    args_file = tmp_path / "args"
    script = _script(tmp_path, "probe", f'echo "$@" > {args_file}\necho "progress noise"\n'
                                        'echo "no: fake reason"\nexit 1\n')
    env = clean_env(BOXLITE_PROBE_SCRIPT=script, BOXLITE_PROBE_TIMEOUT="5")
    r = T.run_probe("/p/python", "/r", env)
    assert r == T.ProbeResult("no: fake reason", 1)
    assert args_file.read_text().split() == ["--cached", "--python", "/p/python", "--rootfs", "/r",
                                             "--timeout", "5"]
    silent = _script(tmp_path, "silent", 'echo oops >&2\nexit 0\n')
    r = T.run_probe("/p", None, clean_env(BOXLITE_PROBE_SCRIPT=silent))
    assert r.line == "no: probe-vm.sh printed no verdict (oops)" and not r.ok
    r = T.run_probe("/p", None, clean_env(BOXLITE_PROBE_SCRIPT=str(tmp_path / "missing")))
    assert r.line.startswith("no: cannot run") and not r.ok


def test_real_sdk_here_skips_with_the_real_probe_line():
    """On this machine (whatever it is) the resolver reports exactly what the probe prints."""
    env = clean_env(BOXLITE_TEST_TARGET="real-sdk")
    for k in ("BOXLITE_TEST_PYTHON", "BOXLITE_TEST_ROOTFS", "BOXLITE_PROBE_TIMEOUT"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    if not os.path.exists(env.get("BOXLITE_TEST_PYTHON", T.REAL_VENV_PYTHON)):
        env["BOXLITE_TEST_PYTHON"] = sys.executable  # no real venv: the probe must say "not installed"
    t = T.resolve_test_target(env)
    assert t.probe is not None
    assert "\n" not in t.reason and t.reason == t.probe.line
    assert t.reason.startswith(("yes:", "no:"))
    assert t.skip == (not t.reason.startswith("yes:"))


# ---------------------------------------------------------------- remote


def test_remote_without_url_skips():
    t = T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="remote"))
    assert t.skip and "BOXLITE_API_URL" in t.reason and t.api is None


def test_remote_with_everything():
    t = T.resolve_test_target(clean_env(
        BOXLITE_TEST_TARGET="remote", BOXLITE_API_URL="http://box:8100/", BOXLITE_API_TOKEN="tok",
        BOXLITE_CLIENT_ID="id", BOXLITE_CLIENT_SECRET="sec", BOXLITE_PREFIX="default",
        BOXLITE_API_DIALECT="sse"))
    assert not t.skip and t.python is None
    assert t.api == T.RemoteApi("http://box:8100", "tok", "id", "sec", "default", "sse")
    d = t.as_dict()
    assert d["api"]["token"] == "***" and d["api"]["client_secret"] == "***"
    with pytest.raises(T.TargetError):
        t.server_command()


@pytest.mark.parametrize("extra", [
    {"BOXLITE_API_URL": "box:8100"},
    {"BOXLITE_API_URL": "http://b", "BOXLITE_CLIENT_ID": "only-id"},
    {"BOXLITE_API_URL": "http://b", "BOXLITE_API_DIALECT": "soap"},
])
def test_remote_malformed(extra):
    with pytest.raises(T.TargetError):
        T.resolve_test_target(clean_env(BOXLITE_TEST_TARGET="remote", **extra))


def test_cli_json(tmp_path):
    script = _script(tmp_path, "probe", 'echo "no: cli reason"; exit 1\n')
    r = subprocess.run([sys.executable, os.path.join(TESTBED_DIR, "realpath", "target.py"), "--json"],
                       capture_output=True, text=True,
                       env=clean_env(BOXLITE_TEST_TARGET="real-sdk", BOXLITE_PROBE_SCRIPT=script))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["skip"] is True and d["reason"] == "no: cli reason" and d["target"] == "real-sdk"
    r = subprocess.run([sys.executable, os.path.join(TESTBED_DIR, "realpath", "target.py")],
                       capture_output=True, text=True, env=clean_env(BOXLITE_TEST_TARGET="nope"))
    assert r.returncode == 2 and "BOXLITE_TEST_TARGET" in r.stderr


# ---------------------------------------------------------------- Node twin

NODE = shutil.which("node")

PARITY_CASES = [
    {},
    {"BOXLITE_TEST_TARGET": "sim", "BOXLITE_SIM_PYTHON": "/s/py", "BOXLITE_TEST_ROOTFS": "/r"},
    {"BOXLITE_TEST_TARGET": "real-sdk", "PROBE": ("no: fake pvm", 1)},
    {"BOXLITE_TEST_TARGET": "real_sdk", "BOXLITE_TEST_PYTHON": "/v/py", "PROBE": ("yes: booted in 1.0s", 0),
     "BOXLITE_TEST_IMAGE": "debian:12"},
    {"BOXLITE_TEST_TARGET": "real-sdk", "PROBE": ("yes: liar", 3)},
    {"BOXLITE_TEST_TARGET": "remote"},
    {"BOXLITE_TEST_TARGET": "remote", "BOXLITE_API_URL": "https://api.example/api/", "BOXLITE_API_TOKEN": "t",
     "BOXLITE_PREFIX": "org", "BOXLITE_API_DIALECT": "b", "BOXLITE_TEST_SERVER": "boxlite-serve-0.11.0"},
]


def _py_view(t: "T.TestTarget") -> dict:
    d = t.as_dict()
    api = d["api"]
    if api:
        api = {"url": api["url"], "token": api["token"], "clientId": api["client_id"],
               "clientSecret": api["client_secret"], "prefix": api["prefix"], "dialect": api["dialect"],
               "server": api["server"]}
    probe = {"line": t.probe.line, "exitCode": t.probe.exit_code} if t.probe else None
    return {"target": t.target, "skip": t.skip, "reason": t.reason, "python": t.python, "rootfs": t.rootfs,
            "image": t.image, "probe": probe, "api": api, "requireVm": t.require_vm}


@pytest.mark.skipif(NODE is None, reason="node not installed")
@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: c.get("BOXLITE_TEST_TARGET", "default"))
def test_node_helper_agrees_with_python(case, tmp_path):
    case = dict(case)
    env = clean_env(**{k: v for k, v in case.items() if k != "PROBE"})
    if "PROBE" in case:
        line, code = case["PROBE"]
        env["BOXLITE_PROBE_SCRIPT"] = _script(tmp_path, "probe", f'echo "{line}"; exit {code}\n')
    if "BOXLITE_SIM_PYTHON" not in env and env.get("BOXLITE_TEST_TARGET", "sim") == "sim":
        env["BOXLITE_SIM_PYTHON"] = "/sim/python"
    r = subprocess.run([NODE, NODE_HELPER, "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    node = json.loads(r.stdout)
    py = _py_view(T.resolve_test_target(env))
    assert node == py


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_node_helper_rejects_unknown_target():
    r = subprocess.run([NODE, NODE_HELPER], capture_output=True, text=True,
                       env=clean_env(BOXLITE_TEST_TARGET="simulator"), timeout=60)
    assert r.returncode == 2 and "BOXLITE_TEST_TARGET" in r.stderr


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_node_server_command(tmp_path):
    code = (
        "import { resolveTestTarget } from %s;"
        "const s = await resolveTestTarget({BOXLITE_SIM_PYTHON: '/s/py'});"
        "const r = await resolveTestTarget({BOXLITE_TEST_TARGET: 'real-sdk', BOXLITE_TEST_PYTHON: '/r/py'},"
        " {probe: async () => ({line: 'yes: ok', exitCode: 0})});"
        "console.log(JSON.stringify([s.serverCommand('--dialect', 'sse'), r.serverCommand('--port', '0'),"
        " s.isReal, r.isReal, r.skip]))"
    ) % json.dumps("file://" + NODE_HELPER)
    r = subprocess.run([NODE, "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60,
                       env=clean_env())
    assert r.returncode == 0, r.stderr
    sim, real, sim_real, real_real, real_skip = json.loads(r.stdout)
    assert sim == {"command": "/s/py", "args": ["-m", "boxlite_testbed.server", "--dialect", "sse"],
                   "env": {"PYTHONPATH": TESTBED_DIR}}
    assert real == {"command": "/r/py", "args": [T.RUN_SERVER, "--port", "0"], "env": {}}
    assert (sim_real, real_real, real_skip) == (False, True, False)
