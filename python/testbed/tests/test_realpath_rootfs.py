"""scripts/build-oci-rootfs.sh: argument handling, idempotency, and (opt-in) a real build.

The real debootstrap build runs only with ``BOXLITE_TEST_BUILD_ROOTFS=1``
(root, debootstrap, umoci and the Debian mirror needed; ~1–4 min). An already
built layout named by ``BOXLITE_TEST_ROOTFS`` is verified whenever it is set.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

TESTBED_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(TESTBED_DIR))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "build-oci-rootfs.sh")
UMOCI = shutil.which("umoci")
REQUIRED_TOOLS = ("bash", "tar", "base64", "stty", "ps")


def run(*args, timeout=60, **kw):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout, **kw)


# ------------------------------------------------------------ OCI layout verification


def verify_oci_layout(path: str, tag: str = "latest", *, list_layer: bool = True) -> dict:
    """Check an OCI image layout the way a consumer would; return facts about it."""
    with open(os.path.join(path, "oci-layout")) as fh:
        assert json.load(fh)["imageLayoutVersion"] == "1.0.0"
    with open(os.path.join(path, "index.json")) as fh:
        index = json.load(fh)
    assert index["schemaVersion"] == 2
    tagged = [m for m in index["manifests"]
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    assert len(tagged) == 1, index

    def blob(desc) -> bytes:
        algo, hexd = desc["digest"].split(":")
        assert algo == "sha256"
        with open(os.path.join(path, "blobs", "sha256", hexd), "rb") as fh:
            data = fh.read()
        assert hashlib.sha256(data).hexdigest() == hexd, desc
        assert len(data) == desc["size"], desc
        return data

    manifest = json.loads(blob(tagged[0]))
    assert tagged[0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # umoci 0.4.7 omits the (optional, image-spec 1.0) mediaType inside the manifest itself
    assert manifest.get("mediaType", tagged[0]["mediaType"]) == tagged[0]["mediaType"]
    assert manifest["schemaVersion"] == 2
    config = json.loads(blob(manifest["config"]))
    assert config["os"] == "linux"
    assert manifest["layers"], "an image without layers is not a rootfs"
    names: set[str] = set()
    for layer in manifest["layers"]:
        data = blob(layer)
        if list_layer:
            assert layer["mediaType"].endswith("tar+gzip")
            with tarfile.open(fileobj=gzip.GzipFile(fileobj=__import__("io").BytesIO(data)), mode="r|") as tf:
                names.update(m.name.lstrip("./") for m in tf)
    return {"manifest": manifest, "config": config, "names": names}


def has_tool(names: set[str], tool: str) -> bool:
    return any(f"{d}/{tool}" in names for d in ("bin", "usr/bin", "sbin", "usr/sbin"))


# ------------------------------------------------------------ argument handling


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "Usage: build-oci-rootfs.sh" in r.stdout and "OUTDIR" in r.stdout


@pytest.mark.parametrize("args,msg", [
    ((), "missing OUTDIR"),
    (("a", "b"), "only one OUTDIR"),
    (("--bogus", "a"), "unknown option: --bogus"),
    (("--tag",), "--tag needs a value"),
    (("--tag", "bad/tag", "a"), "invalid --tag"),
    (("--suite", "Bad Suite", "a"), "invalid --suite"),
    (("/",), "OUTDIR must not be /"),
])
def test_usage_errors(args, msg):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr


def test_dry_run_resolves_mirror_and_packages(tmp_path):
    r = run("--dry-run", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert cfg["outdir"] == str(tmp_path / "out")
    assert cfg["suite"] == "bookworm" and cfg["variant"] == "minbase" and cfg["tag"] == "latest"
    assert cfg["mirror"].startswith(("http://", "https://")) and "security" not in cfg["mirror"]
    for pkg in ("bash", "coreutils", "tar", "procps"):
        assert pkg in cfg["include"].split(",")
    assert cfg["complete"] == "no"
    r = run("--dry-run", "--mirror", "http://mirror.example/debian", "--suite", "trixie",
            "--include", "curl,jq", "--tag=v1", "rel/out", cwd=str(tmp_path))
    cfg = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert cfg["mirror"] == "http://mirror.example/debian" and cfg["suite"] == "trixie"
    assert cfg["include"].endswith(",curl,jq") and cfg["tag"] == "v1"
    assert cfg["outdir"] == str(tmp_path / "rel" / "out")


def test_mirror_is_the_one_apt_uses(tmp_path):
    """Whatever Debian URI apt's sources name first is what debootstrap gets."""
    uris = []
    d = "/etc/apt/sources.list.d"
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.endswith(".sources"):
            for line in open(os.path.join(d, name)):
                if line.lower().startswith("uris:"):
                    uris += [u for u in line.split(":", 1)[1].split()
                             if "debian" in u and "security" not in u]
    if not uris:
        pytest.skip("no deb822 Debian sources here")
    cfg = dict(line.split("=", 1) for line in run("--dry-run", str(tmp_path)).stdout.splitlines())
    assert cfg["mirror"] == uris[0]


def test_check_and_refusals(tmp_path):
    r = run("--check", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stdout.startswith("incomplete:")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "keep.txt").write_text("precious")
    r = run(str(junk))
    assert r.returncode == 1 and "not a complete OCI layout" in r.stderr
    assert (junk / "keep.txt").read_text() == "precious"


def _tiny_layout(path: str, with_layer: bool = True) -> None:
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    subprocess.run(["umoci", "init", "--layout", path], check=True)
    subprocess.run(["umoci", "new", "--image", f"{path}:latest"], check=True)
    if with_layer:
        bundle = path + ".bundle"
        subprocess.run(["umoci", "unpack", *rootless, "--image", f"{path}:latest", bundle], check=True,
                       capture_output=True)
        with open(os.path.join(bundle, "rootfs", "hello"), "w") as fh:
            fh.write("hi\n")
        subprocess.run(["umoci", "repack", "--image", f"{path}:latest", bundle], check=True, capture_output=True)
        shutil.rmtree(bundle)


@pytest.mark.skipif(UMOCI is None, reason="umoci not installed")
def test_complete_layout_is_skipped_and_empty_image_is_not_complete(tmp_path):
    empty = str(tmp_path / "empty")
    _tiny_layout(empty, with_layer=False)
    assert run("--check", empty).returncode == 1
    full = str(tmp_path / "full")
    _tiny_layout(full)
    assert run("--check", full).returncode == 0
    assert run("--check", "--tag", "other", full).returncode == 1
    t0 = time.monotonic()
    r = run(full)  # no root / debootstrap needed: nothing to do
    assert r.returncode == 0 and r.stdout.startswith(f"ok: {full} is already a complete OCI layout")
    assert time.monotonic() - t0 < 10
    assert verify_oci_layout(full)["names"] >= {"hello"}


# ------------------------------------------------------------ real builds


@pytest.mark.skipif(not os.environ.get("BOXLITE_TEST_ROOTFS"), reason="BOXLITE_TEST_ROOTFS not set")
def test_configured_rootfs_is_a_usable_layout():
    facts = verify_oci_layout(os.environ["BOXLITE_TEST_ROOTFS"])
    for tool in REQUIRED_TOOLS:
        assert has_tool(facts["names"], tool), tool


@pytest.mark.skipif(os.environ.get("BOXLITE_TEST_BUILD_ROOTFS") != "1",
                    reason="set BOXLITE_TEST_BUILD_ROOTFS=1 to run debootstrap for real (~1-4 min)")
def test_real_build(tmp_path):
    out = str(tmp_path / "debian-oci")
    t0 = time.monotonic()
    r = run(out, timeout=1800)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().startswith(f"built: {out} (tag latest, ")
    facts = verify_oci_layout(out)
    cfg = facts["config"]["config"]
    assert cfg["Cmd"] == ["/bin/bash"] and cfg["WorkingDir"] == "/"
    assert any(e.startswith("PATH=") for e in cfg["Env"])
    for tool in REQUIRED_TOOLS:
        assert has_tool(facts["names"], tool), tool
    assert not any(n.startswith("var/lib/apt/lists/") and n.endswith("_Packages") for n in facts["names"])
    assert "etc/resolv.conf" not in facts["names"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".debian-oci.build")], "work dir left behind"
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _d, fs in os.walk(out) for f in fs)
    print(f"\nbuilt in {took:.0f}s, {size / 1e6:.1f} MB")
    assert size < 200e6
    r = run(out)
    assert r.returncode == 0 and r.stdout.startswith("ok: ")
