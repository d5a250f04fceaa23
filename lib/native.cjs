/**
 * Loads the native addon, lazily (the adapter's constructor does no I/O). Remote mode uses the
 * main addon from the napi-generated loader `binding.cjs`, which never references libpython.
 * Local mode uses the local flavour `boxlite-local.<platform>.node` (the same binding built with
 * the embedded-Python engine), loaded only after the user's libpython is made global
 * (lib/python-preload.cjs). Load failures report the real cause, not the loader's generic
 * "Cannot find native binding".
 */
'use strict'

const fs = require('node:fs')
const path = require('node:path')

let mainBinding
let localBinding

/** The platform packages that are published (README, "Supported platforms"). */
const SUPPORTED_PLATFORMS =
  'linux-x64-gnu and linux-arm64-gnu (glibc >= 2.17), linux-x64-musl and linux-arm64-musl (remote mode only), ' +
  'darwin-x64 (macOS >= 10.15) and darwin-arm64 (macOS >= 11)'

function environmentError(message, cause) {
  const err = new Error(`[boxlite:environment] ${message}`)
  if (cause) err.cause = cause
  return err
}

function loadMainBinding() {
  if (mainBinding) return mainBinding
  try {
    mainBinding = require('../binding.cjs')
  } catch (err) {
    const detail = err?.cause ? `${err.message} (${err.cause.message ?? err.cause})` : err?.message
    throw environmentError(
      `the native addon of @sandbank.dev/boxlite could not be loaded: ${detail}. ` +
        `Install the package for your platform (npm/pnpm add @sandbank.dev/boxlite installs it as an optional dependency). ` +
        `This is ${platformTag()}; prebuilt addons exist for ${SUPPORTED_PLATFORMS}.`,
      err,
    )
  }
  return mainBinding
}

/**
 * Whether this Linux process runs on musl libc (Alpine): Node's diagnostic report names the
 * glibc it runs on, if any; a musl Node reports none and maps `ld-musl-*`.
 */
function isMusl() {
  if (process.platform !== 'linux') return false
  try {
    const header = process.report?.getReport?.()?.header
    if (header) return !header.glibcVersionRuntime
  } catch {
    // no diagnostic report in this Node build: fall back to the system's ldd
  }
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    return false
  }
}

/** The napi platform tag of this process, as in the platform package names. */
function platformTag() {
  const abi = process.platform === 'linux' ? (isMusl() ? '-musl' : '-gnu') : ''
  return `${process.platform}-${process.arch}${abi}`
}

/** Where the local flavour may be: next to the package (development) or in the platform package. */
function localBindingCandidates() {
  const file = `boxlite-local.${platformTag()}.node`
  const candidates = [path.join(__dirname, '..', file)]
  try {
    const manifest = require.resolve(`@sandbank.dev/boxlite-${platformTag()}/package.json`)
    candidates.push(path.join(path.dirname(manifest), file))
  } catch {
    // the platform package is not installed (development checkout)
  }
  return candidates
}

/** The local flavour, with the libpython of `pythonPath` loaded first (once per process). */
function loadLocalBinding(pythonPath) {
  if (localBinding) {
    // A second interpreter cannot join the process; preloadPython says so clearly.
    require('./python-preload.cjs').preloadPython(pythonPath)
    return localBinding
  }
  if (isMusl()) {
    throw environmentError(
      `local mode is not available on ${platformTag()}: it embeds the boxlite Python SDK, which publishes no ` +
        `musl (Alpine) wheels, so no local-mode addon is built for musl. Use remote mode (apiUrl of a ` +
        `boxlite serve or BoxRun server) here, or run local mode in a glibc-based image (e.g. node:20-slim)`,
    )
  }
  const { preloadPython } = require('./python-preload.cjs')
  preloadPython(pythonPath)
  const candidates = localBindingCandidates()
  const file = candidates.find((candidate) => fs.existsSync(candidate))
  if (!file) {
    throw environmentError(
      `local mode needs boxlite-local.${platformTag()}.node, which is not installed (looked in ${candidates.join(', ')}); ` +
        `reinstall @sandbank.dev/boxlite for this platform`,
    )
  }
  const module = { exports: {} }
  try {
    process.dlopen(module, file)
  } catch (err) {
    throw environmentError(`the local-mode addon ${file} could not be loaded: ${err.message}`, err)
  }
  localBinding = module.exports
  return localBinding
}

/**
 * The binding for a (wire) config: the local flavour for a usable local config, else the main
 * addon (which also reports unusable configs).
 */
function bindingFor(config) {
  const local = config && typeof config === 'object' && config.mode === 'local'
  const pythonPath = local ? (config.pythonPath ?? 'python3') : undefined
  if (local && typeof pythonPath === 'string' && pythonPath.trim() !== '') return loadLocalBinding(pythonPath)
  return loadMainBinding()
}

module.exports = { loadMainBinding, loadLocalBinding, bindingFor, platformTag, isMusl }
