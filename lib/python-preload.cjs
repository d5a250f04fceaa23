/**
 * Local mode only: makes the user's libpython available before the local flavour of the addon
 * (`boxlite-local.<platform>.node`) is loaded. That addon embeds CPython through pyo3's stable
 * ABI without linking libpython, so its Python symbols must already be global in the process:
 * this module asks `pythonPath` where its shared libpython is (out of process) and loads it with
 * RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE. Remote mode never loads this module.
 *
 * Errors are thrown in the addon's own `[boxlite:environment] …` form so lib/errors.cjs maps
 * them like native ones.
 *
 * Loading the local flavour (only on the first local-mode use, never at require time):
 *
 *   const { preloadPython } = require('./python-preload.cjs')
 *   const py = preloadPython(config.pythonPath ?? 'python3')   // throws [boxlite:environment] …
 *   const mod = { exports: {} }
 *   process.dlopen(mod, path.join(root, `boxlite-local.${platform}.node`))   // default flags are fine
 *   const adapter = new mod.exports.NativeAdapter(config)      // same classes as the main addon
 *
 * The addon then probes `pythonPath` again itself (sys.path of a venv, sys.executable) and
 * refuses a libpython of another minor version than the one loaded here.
 */
'use strict'

const { execFileSync } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')
const fs = require('node:fs')

/** The oldest CPython local mode supports. */
const MIN_PYTHON = [3, 10]

/** Not in `os.constants.dlopen`: keeps libpython mapped after Node's failed "addon" load. */
const RTLD_NODELETE = process.platform === 'darwin' ? 0x80 : 0x1000

/** How long the interpreter may take to answer the probe. */
const PROBE_TIMEOUT_MS = 30_000

/** The oldest boxlite SDK local mode supports (as the addon's own check). */
const MIN_SDK = [0, 10, 0]

// Also locates the SDK without importing it, so an interpreter that cannot run local mode is
// refused before its libpython is loaded: a loaded libpython commits the process to it.
const PROBE_SCRIPT = fs.readFileSync(path.join(__dirname, 'python-probe.py'), 'utf8')

function environmentError(message, cause) {
  const err = new Error(`[boxlite:environment] ${message}`)
  if (cause) err.cause = cause
  return err
}

/**
 * Runs `pythonPath` once and returns what it says about itself:
 * `{executable, version: [major, minor, micro], prefix, basePrefix, sysPath, libdir, instsoname, ldlibrary, shared}`.
 */
function probePython(pythonPath = 'python3') {
  let out
  try {
    out = execFileSync(pythonPath, ['-c', PROBE_SCRIPT], {
      encoding: 'utf8',
      timeout: PROBE_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  } catch (err) {
    if (err.code === 'ENOENT') {
      throw environmentError(
        `Python interpreter not found: config.pythonPath is '${pythonPath}'; install Python 3.10 or newer with ` +
          `the boxlite package, or point pythonPath at it (e.g. a venv's bin/python)`,
        err,
      )
    }
    const stderr = String(err.stderr ?? '').trim()
    throw environmentError(`'${pythonPath}' is not a working Python interpreter: ${stderr || err.message}`, err)
  }
  const line = out.trim().split('\n').reverse().find((l) => l.trimStart().startsWith('{'))
  let raw
  try {
    raw = JSON.parse(line ?? '')
  } catch (err) {
    const said = out.trim()
      ? `it printed ${JSON.stringify(out.trim().slice(0, 300))} (${err.message})`
      : 'it exited successfully without printing anything'
    throw environmentError(
      `'${pythonPath}' did not answer like CPython: ${said}. config.pythonPath must name a Python ` +
        `${MIN_PYTHON.join('.')}+ interpreter that has the boxlite package (e.g. a venv's bin/python)`,
      err,
    )
  }
  return {
    executable: raw.executable,
    version: raw.version,
    prefix: raw.prefix,
    basePrefix: raw.base_prefix,
    sysPath: raw.sys_path,
    libdir: raw.libdir,
    instsoname: raw.instsoname,
    ldlibrary: raw.ldlibrary,
    shared: raw.shared,
    sdkOrigin: raw.sdk_origin ?? null,
    sdkError: raw.sdk_error ?? null,
    sdkVersion: raw.sdk_version ?? null,
  }
}

/** `'0.10.8rc1'` → `[0, 10, 8]`. */
function versionTuple(text) {
  return String(text)
    .split('.')
    .slice(0, 3)
    .map((part) => Number.parseInt(part, 10) || 0)
}

function olderThan(a, b) {
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0)
  }
  return false
}

/** Refuses an interpreter without a recent enough boxlite SDK, in the addon's own words. */
function requireSdk(pythonPath, probe) {
  if (!probe.sdkOrigin) {
    throw environmentError(
      `the boxlite Python SDK is not importable from ${pythonPath} (${probe.sdkError ?? 'not found'}); ` +
        `install it into that interpreter: ${pythonPath} -m pip install boxlite`,
    )
  }
  if (probe.sdkVersion && olderThan(versionTuple(probe.sdkVersion), MIN_SDK)) {
    throw environmentError(
      `the boxlite Python SDK ${probe.sdkVersion} at ${pythonPath} is too old; local mode needs boxlite >= ` +
        `${MIN_SDK.join('.')}: ${pythonPath} -m pip install -U boxlite`,
    )
  }
}

/** The shared libpython of a probed interpreter, or a clear error saying why there is none. */
function libpythonOf(pythonPath, probe) {
  const [major, minor, micro] = probe.version
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    throw environmentError(
      `'${pythonPath}' is Python ${major}.${minor}.${micro}; local mode needs Python ${MIN_PYTHON.join('.')} or newer`,
    )
  }
  const soname = probe.instsoname
  if (probe.shared !== 1 || !soname || !/\.so|\.dylib/.test(soname)) {
    throw environmentError(
      `'${pythonPath}' (Python ${major}.${minor}.${micro}) was built without a shared libpython ` +
        `(Py_ENABLE_SHARED=${probe.shared ?? 'unset'}), so it cannot be embedded. Use an interpreter with ` +
        `libpython${major}.${minor}.so: with pyenv, reinstall with ` +
        `PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install ${major}.${minor}.${micro}; on Debian/Ubuntu ` +
        `install libpython${major}.${minor} and use /usr/bin/python${major}.${minor}; then create the venv from ` +
        `that interpreter and pip install boxlite`,
    )
  }
  for (const dir of [probe.libdir, probe.basePrefix && path.join(probe.basePrefix, 'lib')]) {
    if (dir && fs.existsSync(path.join(dir, soname))) return path.join(dir, soname)
  }
  // Let the dynamic loader search its usual places (e.g. a distribution's /usr/lib/<triplet>).
  return soname
}

let loaded // {libpython, version, prefix, ...} of the libpython this process loaded

/**
 * Loads the libpython of `pythonPath` globally, once per process, and returns
 * `{libpython, version: 'X.Y.Z', versionInfo, executable, prefix, sysPath, pythonPath}`.
 * A later call naming another environment fails: one interpreter per process.
 */
function preloadPython(pythonPath = 'python3') {
  // Adapters naming an interpreter already loaded need no second probe (a Python start-up).
  if (loaded && loaded.pythonPath === pythonPath) return loaded
  const probe = probePython(pythonPath)
  const libpython = libpythonOf(pythonPath, probe)
  // Before anything is loaded: a refused interpreter must not commit the process.
  requireSdk(pythonPath, probe)
  const info = {
    pythonPath,
    libpython,
    version: probe.version.join('.'),
    versionInfo: probe.version,
    executable: probe.executable,
    prefix: probe.prefix,
    basePrefix: probe.basePrefix,
    sysPath: probe.sysPath,
  }
  if (loaded) {
    if (loaded.libpython !== libpython || loaded.version !== info.version) {
      throw environmentError(
        `local mode already loaded Python ${loaded.version} (${loaded.libpython}) for '${loaded.pythonPath}' in ` +
          `this process (one interpreter per process); config.pythonPath '${pythonPath}' needs ${libpython}`,
      )
    }
    return info
  }
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE
  try {
    process.dlopen({ exports: {} }, libpython, flags)
  } catch (err) {
    // Expected: libpython is a library, not an addon; it stays loaded thanks to RTLD_NODELETE.
    if (!/did not self-register|no declared entry point/i.test(String(err?.message))) {
      throw environmentError(`cannot load ${libpython} (the libpython of '${pythonPath}'): ${err?.message}`, err)
    }
  }
  loaded = info
  return info
}

module.exports = { preloadPython, probePython, MIN_PYTHON, RTLD_NODELETE }
