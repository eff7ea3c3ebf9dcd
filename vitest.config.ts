import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources, so `pnpm test` needs no build step first.
    alias: {
      "@leanvision/core": src("./packages/core/src/index.ts"),
      "@leanvision/testkit": src("./packages/testkit/src/index.ts"),
      "@leanvision/llama-adapter": src("./packages/llama-adapter/src/index.ts"),
      "@leanvision/transformers-adapter": src("./packages/transformers-adapter/src/index.ts")
    }
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/**/test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: "forks",
    fileParallelism: false
  }
});
