/**
 * Loads the native addon, lazily (the adapter's constructor does no I/O). The main addon comes
 * from the napi-generated loader `binding.cjs`; when that fails, the real `dlopen` error is
 * reported instead of the loader's generic "Cannot find native binding".
 */
'use strict'

let mainBinding

function loadMainBinding() {
  if (mainBinding) return mainBinding
  try {
    mainBinding = require('../binding.cjs')
  } catch (err) {
    const detail = err?.cause ? `${err.message} (${err.cause.message ?? err.cause})` : err?.message
    const wrapped = new Error(
      `[boxlite:environment] the native addon of @sandbank.dev/boxlite could not be loaded: ${detail}. ` +
        `Install the package for your platform (npm/pnpm add @sandbank.dev/boxlite installs it as an optional dependency).`,
    )
    wrapped.cause = err
    throw wrapped
  }
  return mainBinding
}

module.exports = { loadMainBinding }
