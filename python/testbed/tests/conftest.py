"""Shared pytest fixtures.  Simulator fixtures: ``sim_home``, ``sim_rt``."""

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
