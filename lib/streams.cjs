/**
 * Web-stream helpers: native streams are re-wrapped so that an error raised inside them reaches
 * the reader as a mapped JS error, and cancelling the wrapper cancels the native stream (which
 * stops the work behind it).
 */
'use strict'

function mapStreamErrors(source, mapError) {
  const reader = source.getReader()
  return new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await reader.read()
        if (done) controller.close()
        else controller.enqueue(value)
      } catch (err) {
        controller.error(await mapError(err))
      }
    },
    cancel(reason) {
      return reader.cancel(reason)
    },
  })
}

module.exports = { mapStreamErrors }
