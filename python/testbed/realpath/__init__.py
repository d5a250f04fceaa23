"""realpath — running the test suites against the REAL boxlite SDK / a real server.

* :mod:`realpath.probe` (also ``scripts/probe-vm.sh``): can VMs boot here?
* :mod:`realpath.boot_attempt`: the boot attempt run inside the probed interpreter.
* :mod:`realpath.target`: ``BOXLITE_TEST_TARGET`` resolution (sim / real-sdk / remote).
* :mod:`realpath.run_server`: the test server over the real SDK.

See ``python/testbed/REAL.md``. Standard library only.
"""
