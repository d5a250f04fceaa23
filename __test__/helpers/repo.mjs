/** Paths and process helpers shared by the test suites. */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
export const run = promisify(execFile)
