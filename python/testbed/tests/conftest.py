"""Shared pytest fixtures.  Simulator fixtures: ``sim_home``, ``sim_rt``; every test of a module
with a ``srv`` test-server fixture starts from a clean server."""

from __future__ import annotations

import pytest


@pytest.fixture
def sim_home(tmp_path):
    """A fresh BOXLITE home directory for the SDK simulator."""
    home = tmp_path / "boxlite-home"
    home.mkdir()
    return str(home)


@pytest.fixture
def sim_rt(sim_home):
    """A simulator runtime on ``sim_home``; its running boxes are stopped afterwards."""
    import boxlite
    from boxlite._engine import run_sync

    rt = boxlite.Boxlite(boxlite.Options(home_dir=sim_home))
    yield rt
    core = rt._core
    run_sync(lambda: core.shutdown(None), timeout=30)


@pytest.fixture(autouse=True)
def _reset_test_server(request):
    """After each test that used the module's ``srv`` server: no boxes, faults or request log."""
    yield
    if "srv" in request.fixturenames:
        request.getfixturevalue("srv").reset()
