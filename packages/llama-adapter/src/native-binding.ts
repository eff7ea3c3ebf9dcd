// Finds and loads the LeanVision native addon built for the node-llama-cpp binaries in use, and
// makes it a checked bridge: every mmproj is checked by src/mmproj.ts before the native side (and
// llama.cpp) opens it, and every native error becomes a LeanVisionError.
//
// scripts/build-native.mjs links one addon per node-llama-cpp binaries directory (prebuilt CPU,
// CUDA, Vulkan, or a local build) and records them in build/native/manifest.json. At run time the
// addon must match the libllama node-llama-cpp actually loaded (getLlama() picks it: libllama.v0.5.0.so,
// libllama.vulkan.v0.5.0.so, libllama.cuda.v0.5.0.so, ...), so we look that file up among the
// process's loaded shared objects and pick the addon linked against it.
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LeanVisionError } from "@leanvision/core";
import { describeBinsDir, libllamaVariant, nodeLlamaCppVersion, requiredNodeLlamaCppVersion } from "../scripts/llama-source.mjs";
import { inspectMmproj } from "./mmproj.js";
import type { VisionContextInfo } from "./mmproj.js";
import { inspectProjectorFile } from "./projector-file.js";
import type { ProjectorFileInfo } from "./projector-file.js";

export type { VisionContextInfo } from "./mmproj.js";
export type { ProjectorFileInfo } from "./projector-file.js";

/** Opaque handle of a loaded projector file (src/native/projector-file.cpp). */
export interface ProjectorFileHandle {
  readonly native: unknown;
  readonly info: ProjectorFileInfo;
}

/** Opaque handle of a native vision context. */
export interface VisionContextHandle {
  readonly native: unknown;
  readonly info: VisionContextInfo;
  /** Where the vision graph runs: "leanvision-cpu (<tier>)", "node-llama-cpp (<why>)" or "gpu" (src/native/cpu-backend.h). */
  readonly backend: string;
}

/** The feature layer as captured from mtmd's graph: a core VisionFeatures in flat form. */
export interface NativeVisionFeatures {
  /** [numTokens x dim]: the projector's input tokens, patches in grid order then CLS (if any). */
  hidden: Float32Array;
  numTokens: number;
  dim: number;
  gridRows: number;
  gridCols: number;
  clsIndex: number | null;
  /** The rows of `hidden` llama.cpp's own graph feeds its projector (`patches` input). */
  projectorRows: Int32Array;
  /**
   * [numTokens] VisionZip's ranking, computed natively from the feature layer's queries and keys
   * (capture only): with CLS the CLS query's softmax row, without CLS the softmax's column sums; summed over heads.
   */
  attentionScores?: Float32Array;
  /** [heads x numTokens x numTokens] softmax probabilities (capture on a context with `flashAttention: false` only). */
  attention?: Float32Array;
  heads?: number;
  /** [numTokens x keyDim], averaged over heads (capture only). */
  keys?: Float32Array;
  keyDim?: number;
  /** [numTokens x multiLevelDim]: the outputs of the encoder layers `levels` asked for, concatenated per token. */
  multiLevel?: Float32Array;
  multiLevelDim?: number;
}

/** An image preprocessed by mtmd (prepareImage): its tiles, not yet encoded. */
export interface PreparedImageHandle {
  readonly native: unknown;
  /** Tiles mtmd made (one image chunk each). */
  readonly tiles: number;
}

/** Decodes embedding rows into a node-llama-cpp context's sequence; resolves to the number of rows decoded. */
export type DecodeEmbeddings = (
  contextAddonObject: object,
  sequenceId: number,
  startPos: number,
  embd: Float32Array,
  nTokens: number,
  nEmbd: number,
  batchSize: number
) => Promise<number>;

export interface VisionContextOptions {
  nThreads: number;
  useGpu: boolean;
  /**
   * mtmd's default attention (flash attention where supported) when true (default). false turns flash
   * attention off in every layer: the reference path, whose capture also returns the whole `attention`.
   */
  flashAttention?: boolean;
}

/** Every function throws or rejects with LeanVisionError. */
export interface NativeBinding {
  /**
   * Checks the mmproj completely (src/mmproj.ts: INVALID_INPUT, INVALID_MODEL, UNSUPPORTED_MODEL),
   * then loads it with mtmd's default attention (see VisionContextOptions.flashAttention).
   */
  createVisionContext(mmprojPath: string, opts: VisionContextOptions): VisionContextHandle;
  /**
   * Capture of every tile of an image, in mtmd's order: one tile for LLaVA-1.5; for LLaVA-1.6 the
   * high-resolution tiles row-major, then the overview. NON_FINITE never comes from here (the
   * reducers and project check). `levels`: encoder layers (0-based, at most the feature layer) whose
   * outputs are captured too, as multiLevel.
   */
  encode(
    handle: VisionContextHandle,
    rgb: Uint8Array,
    width: number,
    height: number,
    opts: { capture: boolean; levels?: number[] }
  ): Promise<NativeVisionFeatures[]>;
  /** mtmd's preprocessing of an image (its tiles, in mtmd's order as for encode), for encodeTile. */
  prepareImage(handle: VisionContextHandle, rgb: Uint8Array, width: number, height: number): Promise<PreparedImageHandle>;
  /** Capture of one tile of a prepared image (index in mtmd's order), so a caller can prefill one tile while the next encodes. */
  encodeTile(handle: VisionContextHandle, prepared: PreparedImageHandle, index: number, opts: { capture: boolean; levels?: number[] }): Promise<NativeVisionFeatures>;
  /** mtmd's own output embeddings for the image (all tiles, mtmd's order), [tokens x projectionDim]; NON_FINITE if any is NaN or infinite. */
  encodeStock(handle: VisionContextHandle, rgb: Uint8Array, width: number, height: number): Promise<Float32Array>;
  /** The mmproj's projector on [numTokens x hiddenDim] rows, natively; NON_FINITE for a non-finite input or output. */
  project(handle: VisionContextHandle, hidden: Float32Array, numTokens: number): Promise<Float32Array>;
  freeVisionContext(handle: VisionContextHandle): void;
  /**
   * Checks a projector file completely (src/projector-file.ts: INVALID_INPUT, INVALID_MODEL,
   * UNSUPPORTED_MODEL), then loads its weights (projector-file.cpp).
   */
  loadProjectorFile(path: string, opts: { nThreads: number; useGpu: boolean }): ProjectorFileHandle;
  /** The file's projector on [numRows x info.rowDim] rows → [numRows x info.outputDim]; NON_FINITE for a non-finite input or output. */
  runProjectorFile(handle: ProjectorFileHandle, rows: Float32Array, numRows: number): Promise<Float32Array>;
  freeProjectorFile(handle: ProjectorFileHandle): void;
  /** From inject.cpp: decodes embedding rows into a node-llama-cpp context's sequence. */
  decodeEmbeddings: DecodeEmbeddings;
}

/** The addon's own exports (src/native/*.cpp): errors carry a string `code`; the mmproj layout comes from src/mmproj.ts. */
interface NativeAddon extends Omit<NativeBinding, "createVisionContext" | "loadProjectorFile"> {
  createVisionContext(mmprojPath: string, layout: VisionContextInfo, opts: VisionContextOptions): { native: unknown; backend: string };
  loadProjectorFile(path: string, layout: ProjectorFileInfo, opts: { nThreads: number; useGpu: boolean }): { native: unknown };
}

interface Manifest {
  nodeLlamaCpp: string;
  llamaCommit: string;
  /** `addon` is relative to the manifest's folder (absolute in manifests of older builds). */
  addons: Array<{ flavour?: string; binsDir: string; libllama: string; addon: string; hasInject: boolean }>;
}

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const buildScript = path.join(adapterDir, "scripts", "build-native.mjs");
const manifestPath = path.join(adapterDir, "build", "native", "manifest.json");
let loaded: NativeBinding | undefined;

/**
 * Loads the addon matching the libllama node-llama-cpp has loaded (its CPU, CUDA, Vulkan or Metal
 * prebuilt binaries, or a local build). Call after `await getLlama()`.
 * Throws LeanVisionError NATIVE_BUILD, saying what to run, when the addon is missing or mismatched.
 */
export function loadNativeBinding(): NativeBinding {
  if (loaded) return loaded;
  const libllama = loadedLibllama();
  if (!libllama) {
    throw nativeError("node-llama-cpp has not loaded its llama.cpp binaries yet; call `await getLlama()` before loading a vision model");
  }
  const flavour = flavourOf(libllama);
  if (process.platform !== "linux") {
    throw nativeError(
      `node-llama-cpp is using its ${flavour} binaries (${libllama}), but the LeanVision native addon can only be built on Linux so far`
    );
  }
  if (!existsSync(manifestPath)) {
    throw nativeError(
      `the LeanVision native addon is not built (no ${manifestPath}; the package's install script builds it and may have failed); ` +
        `run: node ${buildScript}`
    );
  }
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  const installed = nodeLlamaCppVersion();
  const required = requiredNodeLlamaCppVersion();
  if (installed !== required) {
    throw nativeError(`@leanvision/llama-adapter needs node-llama-cpp exactly ${required}, but ${installed} is installed; run: npm install node-llama-cpp@${required}`);
  }
  if (manifest.nodeLlamaCpp !== installed) {
    throw nativeError(`the native addon was built for node-llama-cpp ${manifest.nodeLlamaCpp} but ${installed} is installed; run: node ${buildScript}`);
  }
  const entry = manifest.addons.find((a) => existsSync(a.libllama) && realpathSync(a.libllama) === libllama);
  if (!entry) {
    const built = manifest.addons.map((a) => `${a.flavour ?? flavourOf(a.libllama)} (${a.binsDir})`).join(", ") || "none";
    throw nativeError(
      `node-llama-cpp is using its ${flavour} binaries (${libllama}) and no LeanVision addon was built for them ` +
        `(built for: ${built}); build one with: node ${buildScript} --bins ${path.dirname(libllama)}`
    );
  }
  const addonPath = path.resolve(path.dirname(manifestPath), entry.addon);
  if (!existsSync(addonPath)) throw nativeError(`${addonPath} (for node-llama-cpp's ${flavour} binaries) is missing; run: node ${buildScript}`);
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
  } catch (err) {
    throw nativeError(`cannot load ${addonPath} (${(err as Error).message}); rebuild it: node ${buildScript}`, err);
  }
  loaded = checkedBinding(addon);
  return loaded;
}

/** The addon behind the NativeBinding contract: mmprojs checked first, errors typed. */
function checkedBinding(addon: NativeAddon): NativeBinding {
  return {
    createVisionContext: typed((mmprojPath: string, opts: VisionContextOptions) => {
      const info = inspectMmproj(mmprojPath);
      const { native, backend } = addon.createVisionContext(mmprojPath, info, opts);
      return { native, info, backend };
    }),
    encode: typed(addon.encode),
    encodeStock: typed(addon.encodeStock),
    prepareImage: typed(addon.prepareImage),
    encodeTile: typed(addon.encodeTile),
    project: typed(addon.project),
    freeVisionContext: typed(addon.freeVisionContext),
    loadProjectorFile: typed((path: string, opts: { nThreads: number; useGpu: boolean }) => {
      const info = inspectProjectorFile(path);
      return { native: addon.loadProjectorFile(path, info, opts).native, info };
    }),
    runProjectorFile: typed(addon.runProjectorFile),
    freeProjectorFile: typed(addon.freeProjectorFile),
    decodeEmbeddings: typed(addon.decodeEmbeddings),
  };
}

/** `fn` with its synchronous throws and its promise's rejections passed through toLeanVisionError. */
function typed<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      const result = fn(...args);
      return (result instanceof Promise ? result.catch((err: unknown) => Promise.reject(toLeanVisionError(err))) : result) as R;
    } catch (err) {
      throw toLeanVisionError(err);
    }
  };
}

/** "CPU", "Vulkan", "CUDA", "Metal", "Vulkan local build", ... for a libllama path. */
function flavourOf(libllama: string): string {
  try {
    return describeBinsDir(libllama).label;
  } catch {
    return path.basename(libllama);
  }
}

/** Which node-llama-cpp binaries this process runs, for reports (benchmarks, measure-vision). */
export interface BinariesInUse {
  /** node-llama-cpp's `llama.buildType`: "prebuilt" or "localBuild". */
  buildType: string;
  /** Directory of the libllama loaded. */
  binsDir: string | null;
  /** ggml CPU backend variants loaded from that directory (prebuilt: libggml-cpu-<tier>.so), if any. */
  ggmlCpu: string[];
}

export function binariesInUse(llama: { buildType: string }): BinariesInUse {
  const libllama = loadedLibllama();
  const mapped = process.platform === "linux" ? readFileSync("/proc/self/maps", "utf8").split("\n").map((l) => l.slice(l.indexOf("/"))) : [];
  const ggmlCpu = [...new Set(mapped.filter((f) => /^libggml-cpu[\w.-]*\.so$/.test(path.basename(f))).map((f) => path.basename(f)))];
  return { buildType: llama.buildType, binsDir: libllama ? path.dirname(libllama) : null, ggmlCpu };
}

/** Real path of the libllama shared object loaded in this process, or undefined. */
function loadedLibllama(): string | undefined {
  const isLibllama = (file: string) => libllamaVariant(file) !== null;
  let objects: string[];
  if (process.platform === "linux") {
    // /proc/self/maps is cheap and always current; lines end with the mapped file's path.
    objects = readFileSync("/proc/self/maps", "utf8").split("\n").map((l) => l.slice(l.indexOf("/"))).filter((p) => p.startsWith("/"));
  } else {
    const report = process.report?.getReport() as { sharedObjects?: string[] } | undefined;
    objects = report?.sharedObjects ?? [];
  }
  const file = objects.find(isLibllama);
  return file ? realpathSync(file) : undefined;
}

function nativeError(message: string, cause?: unknown): LeanVisionError {
  return new LeanVisionError("NATIVE_BUILD", message, cause === undefined ? undefined : { cause });
}

/** Native errors carry a string `code`; turn them into LeanVisionError, keep anything else as is. */
export function toLeanVisionError(err: unknown): unknown {
  if (err instanceof LeanVisionError) return err;
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  if (typeof code === "string") return new LeanVisionError(code, (err as Error).message, { cause: err });
  return err;
}
