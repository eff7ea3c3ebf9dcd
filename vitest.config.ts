import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources, so `pnpm test` needs no build step first.
    // Exact matches, so subpath exports such as "@leanvision/llama-adapter/llama-source" resolve normally.
    alias: [
      { find: /^@leanvision\/core$/, replacement: src("./packages/core/src/index.ts") },
      { find: /^@leanvision\/core\/(presets|stats)$/, replacement: src("./packages/core/src/$1.ts") },
      { find: /^@leanvision\/image$/, replacement: src("./packages/image/src/index.ts") },
      { find: /^@leanvision\/testkit$/, replacement: src("./packages/testkit/src/index.ts") },
      { find: /^@leanvision\/testkit\/(progress|mtmd-log)$/, replacement: src("./packages/testkit/src/gguf/$1.ts") },
      { find: /^@leanvision\/llama-adapter$/, replacement: src("./packages/llama-adapter/src/index.ts") },
      { find: /^@leanvision\/llama-adapter\/gguf$/, replacement: src("./packages/llama-adapter/src/gguf.ts") },
      { find: /^@leanvision\/transformers-adapter$/, replacement: src("./packages/transformers-adapter/src/index.ts") }
    ]
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/**/test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: "forks",
    fileParallelism: false
  }
});
