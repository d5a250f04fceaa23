"""Tar-based file transfer shared by the SSE-era dialects and `current` (docs/dialects.md, "Tar upload"/"Tar download")."""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tarfile
import tempfile
from typing import Any


class ArchiveError(Exception):
    """The uploaded body is not an acceptable tar archive."""


def _copy_options(bl: Any, **kw: Any) -> Any:
    try:
        return bl.CopyOptions(**kw)
    except Exception:
        return None


def _safe_extract(tf: tarfile.TarFile, dest: str) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    try:
        tf.extractall(dest, filter="data")
    except TypeError:  # Python without extraction filters
        for m in members:
            name = posixpath.normpath(m.name)
            if name.startswith("..") or name.startswith("/"):
                raise ArchiveError(f"unsafe path in archive: {m.name}")
        tf.extractall(dest)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"failed to extract tar: {exc}") from exc
    return members


def _norm(name: str) -> str:
    n = posixpath.normpath(name.lstrip("/"))
    return "" if n in (".", "") else n


def single_top_file(members: list[tarfile.TarInfo]) -> str | None:
    """The archive's only entry if it is one top-level regular file."""
    real = [m for m in members if _norm(m.name)]
    if len(real) == 1 and real[0].isreg() and "/" not in _norm(real[0].name):
        return _norm(real[0].name)
    return None


def top_level_names(members: list[tarfile.TarInfo]) -> set[str]:
    return {_norm(m.name).split("/", 1)[0] for m in members if _norm(m.name)}


async def upload_tar(bl: Any, box: Any, body: bytes, path: str, *, overwrite: bool,
                     style: str, source_is_dir: bool | None = None) -> None:
    """Place an uploaded tar into the guest.

    ``style="ref"``: the Python reference server (any compression; contents
    of the archive placed at ``path``: a lone file is written *as* ``path``
    unless ``path`` ends with ``/`` or is an existing directory).
    ``style="serve"``: boxlite serve (plain tar only; unpacked into a host
    directory named ``extracted`` that is copied with docker-cp rules, so it
    nests as ``path/extracted/...`` when ``path`` already exists).
    """
    mode = "r:*" if style == "ref" else "r:"
    if not body:
        raise ArchiveError("failed to extract tar: empty archive")
    try:
        tf = tarfile.open(fileobj=io.BytesIO(body), mode=mode)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"failed to extract tar: {exc}") from exc
    tmp = tempfile.mkdtemp(prefix="boxlite-testbed-up-")
    try:
        extracted = os.path.join(tmp, "extracted")
        os.makedirs(extracted)
        with tf:
            members = _safe_extract(tf, extracted)
        if style == "ref" and not [m for m in members if _norm(m.name)]:
            raise ArchiveError("failed to extract tar: empty archive")
        opts = _copy_options(bl, recursive=True, overwrite=overwrite, follow_symlinks=False)
        if source_is_dir is not None:
            # boxlite 0.10.8's REST client sends ?source_is_dir= and a tar whose
            # single top-level entry is basename(src) ("." for SRC/.): place that
            # entry at `path` with docker-cp rules, like a local copy_in.
            tops = top_level_names(members)
            has_dot = any(_norm(m.name) == "" for m in members)
            if len(tops) == 1 and not has_dot:
                src = os.path.join(extracted, tops.pop())
            else:
                src = extracted + "/."
        elif style == "ref":
            single = single_top_file(members)
            if single is not None:
                src = os.path.join(extracted, single)
            else:
                src = extracted + "/."
        else:
            src = extracted
        if opts is None:
            await box.copy_in(src, path)
        else:
            await box.copy_in(src, path, opts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def download_tar(bl: Any, box: Any, path: str, *, follow_symlinks: bool,
                       style: str) -> bytes:
    """Copy ``path`` out of the guest and return an uncompressed tar whose
    top-level entry is ``basename(path)`` (``style="serve"`` prefixes the
    entries with ``./`` and adds a ``.`` directory entry)."""
    base = posixpath.basename(path.rstrip("/")) or "rootfs"
    tmp = tempfile.mkdtemp(prefix="boxlite-testbed-down-")
    try:
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        host_dest = os.path.join(out, base)
        opts = _copy_options(bl, recursive=True, overwrite=True, follow_symlinks=follow_symlinks)
        if opts is None:
            await box.copy_out(path, host_dest)
        else:
            await box.copy_out(path, host_dest, opts)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            if style == "serve":
                tf.add(out, arcname=".", recursive=True)
            else:
                tf.add(host_dest, arcname=base, recursive=True)
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
