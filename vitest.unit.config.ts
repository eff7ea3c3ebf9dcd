// `pnpm test:unit`: the tests that need no model (no GGUF or ONNX files, no native addon, no
// llama.cpp): core's reducers and kernels, argument parsing, report formatting, log parsing, the
// GGUF writer. Seconds instead of the full suite's minutes; `pnpm test` still runs everything.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import full from "./vitest.config.js";

export const UNIT_TESTS = [
  "packages/core/test/**/*.test.ts",
  "packages/testkit/test/gguf-writer.test.ts",
  "packages/testkit/test/gguf-progress.test.ts",
  "packages/testkit/test/cli-args.test.ts",
  "packages/testkit/test/mtmd-log.test.ts",
  "examples/bench/test/args.test.ts",
  "examples/bench/test/report.test.ts",
  "examples/bench/test/mtmd-anchor.test.ts",
  "examples/demo/test/demo-args.test.ts"
];

// A renamed or deleted file would otherwise drop out of the unit run without a word.
for (const file of UNIT_TESTS) {
  if (!file.includes("*") && !existsSync(fileURLToPath(new URL(file, import.meta.url)))) {
    throw new Error(`vitest.unit.config.ts lists ${file}, which does not exist; update UNIT_TESTS`);
  }
}

export default defineConfig({
  ...full,
  // No model files to share, so the files may run side by side.
  test: { ...full.test, include: UNIT_TESTS, fileParallelism: true }
});
