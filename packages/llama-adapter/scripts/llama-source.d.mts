export function requiredNodeLlamaCppVersion(): string;
export function leanvisionCacheDir(): string;
export function nodeLlamaCppDir(): string;
export function nodeLlamaCppVersion(): string;
export function checkNodeLlamaCppVersion(): string;
export function checkGit(): void;
export function bundledLlamaCommit(): string;
export function llamaSourceDir(commit?: string, cacheDir?: string): string;
export function ensureLlamaSource(opts?: { cacheDir?: string }): string;
export function libllamaVariant(fileName: string): string | null;
export function libllamaIn(dir: string): string | null;
export interface BinsFlavour {
  /** File name of the libllama shared library. */
  libllama: string;
  /** "v0.5.0", "vulkan.v0.5.0", ... ("" for a plain libllama.so). */
  variant: string;
  /** "cpu", "vulkan", "cuda", "metal", ... */
  gpu: string;
  /** A node-llama-cpp local build (llama/localBuilds). */
  local: boolean;
  /** In words: "CPU", "Vulkan", "CUDA local build", ... */
  label: string;
}
export function describeBinsDir(fileOrDir: string): BinsFlavour;
