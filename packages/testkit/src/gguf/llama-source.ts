// node-llama-cpp's bundled llama.cpp source (vocab GGUFs, sample image), through the llama adapter's locator.
export { ensureLlamaSource, bundledLlamaCommit, nodeLlamaCppDir } from "@leanvision/llama-adapter/llama-source";
