import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const entry = fileURLToPath(new URL('./index.js', import.meta.url))

// Projects by kind: fast unit tests, packaging tests that build tarballs,
// and integration suites against the test bed (serial, long timeouts).
export default defineConfig({
  resolve: {
    // Tests import the package by its name, as users do.
    alias: { '@sandbank.dev/boxlite': entry },
  },
  test: {
    server: {
      deps: {
        // Load the package and core natively (not through vite's transform), so the test and the
        // package share one module instance of core: error classes must be the user's own.
        external: [/core-standin/, /\/index\.c?js$/, /\/lib\/[^/]+\.cjs$/, /binding\.cjs$/],
      },
    },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['__test__/unit/**/*.spec.{ts,mjs}'],
          isolate: true,
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'packaging',
          include: ['__test__/packaging/**/*.spec.{ts,mjs}'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          // Official clients (the @boxlite-ai/boxlite Node SDK) judging our test server.
          name: 'official',
          include: ['__test__/official/**/*.spec.{ts,mjs}'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['__test__/integration/**/*.spec.{ts,mjs}'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
