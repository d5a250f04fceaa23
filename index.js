/** ESM entry of @sandbank.dev/boxlite: the same class as the CommonJS entry (one module instance). */
import pkg from './index.cjs'

export const { BoxLiteAdapter } = pkg
