/**
 * `BoxLiteClient`: what `getClient()` returns, with the original client's method names and
 * snake_case shapes, in both modes. Every method delegates to the native adapter; rejections are
 * plain `Error`s with a stable `code` (the original's client errors were plain errors too).
 */
'use strict'

const { fromNative } = require('./errors.cjs')
const { mapStreamErrors } = require('./streams.cjs')

const PLAIN_METHODS = [
  'createBox', 'getBox', 'listBoxes', 'deleteBox', 'startBox', 'stopBox', 'exec', 'execAsync',
  'sendExecInput', 'signalExec', 'resizeExec', 'uploadFiles', 'createSnapshot', 'listSnapshots',
  'restoreSnapshot', 'deleteSnapshot', 'cloneBox', 'importBox', 'getMetrics', 'getBoxMetrics', 'getConfig',
]
const STREAM_METHODS = ['execStream', 'getExecOutput', 'downloadFiles', 'exportBox']

/** The native-adapter getter of each client, kept out of the public object. */
const nativeOf = new WeakMap()

class BoxLiteClient {
  /**
   * @param native a function returning the native adapter (created on first use).
   * @param dispose the owning adapter's `dispose`.
   */
  constructor(native, dispose) {
    nativeOf.set(this, native)
    Object.defineProperty(this, 'dispose', { value: dispose, enumerable: false })
  }
}

function define(method, call) {
  Object.defineProperty(BoxLiteClient.prototype, method, {
    value: async function (...args) {
      try {
        return await call(nativeOf.get(this)(), args)
      } catch (err) {
        throw fromNative(err)
      }
    },
    writable: true,
    configurable: true,
  })
}
for (const method of PLAIN_METHODS) define(method, (native, args) => native[method](...args))
for (const method of STREAM_METHODS) {
  define(method, async (native, args) => mapStreamErrors(await native[method](...args), fromNative))
}

module.exports = { BoxLiteClient, CLIENT_METHODS: [...PLAIN_METHODS, ...STREAM_METHODS] }
