/**
 * Copies the user's config into plain JSON for the native side without ever throwing: values
 * JSON cannot carry become `{ "$unsupportedType": "<type>" }`, so the first use can report the
 * field and its type (validation itself happens in Rust, crates/core/src/config.rs).
 */
'use strict'

function toWireConfig(config) {
  const seen = new WeakSet()
  const convert = (value) => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value
      case 'number':
        return Number.isFinite(value) ? value : { $unsupportedType: `non-finite number (${value})` }
      case 'undefined':
        return undefined
      case 'function':
      case 'symbol':
      case 'bigint':
        return { $unsupportedType: typeof value }
      default:
        if (value === null) return null
        if (seen.has(value)) return { $unsupportedType: 'circular reference' }
        seen.add(value)
        if (Array.isArray(value)) return value.map((v) => convert(v) ?? null)
        const out = {}
        for (const [key, v] of Object.entries(value)) {
          const converted = convert(v)
          if (converted !== undefined) out[key] = converted
        }
        return out
    }
  }
  try {
    return convert(config) ?? null
  } catch (err) {
    // Proxies and exotic objects can throw while being read; report it on first use instead.
    return { $unsupportedType: `unreadable config (${err?.message ?? err})` }
  }
}

module.exports = { toWireConfig }
