// node-llama-cpp's bundled llama.cpp source, through @leanvision/llama-adapter/llama-source.
// Loaded via import.meta.resolve because the root vitest config aliases "@leanvision/llama-adapter"
// to its src/index.ts, which would swallow this subpath; Node resolves it the same way either way.
import type * as LlamaSourceModule from "@leanvision/llama-adapter/llama-source";

const llamaSource = (await import(import.meta.resolve("@leanvision/llama-adapter/llama-source"))) as typeof LlamaSourceModule;

export const { ensureLlamaSource, bundledLlamaCommit, nodeLlamaCppDir } = llamaSource;
