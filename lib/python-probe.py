"""What local mode asks a Python interpreter before using it, out of process: its version, paths and
shared libpython, and where `import boxlite` would load the SDK from, without importing it (cheap, no
side effects). Run with `python -c` by lib/python-preload.cjs and by the addon (crates/core/src/local/
probe.rs), which both read the one JSON line it prints."""
import json, sys, sysconfig as s
sdk_origin = sdk_error = sdk_version = None
try:
  import importlib.util
  spec = importlib.util.find_spec("boxlite")
  if spec is None:
    sdk_error = "ModuleNotFoundError: No module named 'boxlite'"
  else:
    sdk_origin = spec.origin or "namespace package"
except Exception as e:
  sdk_error = f"{type(e).__name__}: {e}"
try:
  from importlib.metadata import version
  sdk_version = version("boxlite")
except Exception:
  pass
print(json.dumps({
  "sdk_origin": sdk_origin, "sdk_error": sdk_error, "sdk_version": sdk_version,
  "executable": sys.executable, "version": list(sys.version_info[:3]),
  "prefix": sys.prefix, "base_prefix": sys.base_prefix, "sys_path": sys.path[1:],
  "libdir": s.get_config_var("LIBDIR"), "instsoname": s.get_config_var("INSTSONAME"),
  "ldlibrary": s.get_config_var("LDLIBRARY"), "shared": s.get_config_var("Py_ENABLE_SHARED"),
}))
