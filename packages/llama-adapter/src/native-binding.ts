// Finds and loads the LeanVision native addon built for the node-llama-cpp binaries in use, and
// makes it a checked bridge: every mmproj is checked by src/mmproj.ts before the native side (and
// llama.cpp) opens it, and every native error becomes a LeanVisionError.
//
// scripts/build-native.mjs links one addon per node-llama-cpp binaries directory (prebuilt CPU,
// CUDA, Vulkan, or a local build) and records them in build/native/manifest.json. At run time the
// addon must match the libllama node-llama-cpp actually loaded (getLlama() picks it), so we look
// that file up among the process's loaded shared objects and pick the addon linked against it.
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LeanVisionError } from "@leanvision/core";
import { nodeLlamaCppVersion } from "../scripts/llama-source.mjs";
import { inspectMmproj } from "./mmproj.js";
import type { VisionContextInfo } from "./mmproj.js";

export type { VisionContextInfo } from "./mmproj.js";

/** Opaque handle of a native vision context. */
export interface VisionContextHandle {
  readonly native: unknown;
  readonly info: VisionContextInfo;
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
  /** [heads x numTokens x numTokens] softmax probabilities (capture only). */
  attention?: Float32Array;
  heads?: number;
  /** [numTokens x keyDim], averaged over heads (capture only). */
  keys?: Float32Array;
  keyDim?: number;
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
  flashAttention?: boolean;
}

/** Every function throws or rejects with LeanVisionError. */
export interface NativeBinding {
  /**
   * Checks the mmproj completely (src/mmproj.ts: INVALID_INPUT, INVALID_MODEL, UNSUPPORTED_MODEL),
   * then loads it. Flash attention stays off (capture needs the attention softmax) unless
   * `flashAttention` is true, which gives mtmd's default for a context used only by encodeStock.
   */
  createVisionContext(mmprojPath: string, opts: VisionContextOptions): VisionContextHandle;
  /**
   * Capture of every tile of an image, in mtmd's order: one tile for LLaVA-1.5; for LLaVA-1.6 the
   * high-resolution tiles row-major, then the overview. NON_FINITE never comes from here (the
   * reducers and project check).
   */
  encode(handle: VisionContextHandle, rgb: Uint8Array, width: number, height: number, opts: { capture: boolean }): Promise<NativeVisionFeatures[]>;
  /** mtmd's preprocessing of an image (its tiles, in mtmd's order as for encode), for encodeTile. */
  prepareImage(handle: VisionContextHandle, rgb: Uint8Array, width: number, height: number): Promise<PreparedImageHandle>;
  /** Capture of one tile of a prepared image (index in mtmd's order), so a caller can prefill one tile while the next encodes. */
  encodeTile(handle: VisionContextHandle, prepared: PreparedImageHandle, index: number, opts: { capture: boolean }): Promise<NativeVisionFeatures>;
  /** mtmd's own output embeddings for the image (all tiles, mtmd's order), [tokens x projectionDim]; NON_FINITE if any is NaN or infinite. */
  encodeStock(handle: VisionContextHandle, rgb: Uint8Array, width: number, height: number): Promise<Float32Array>;
  /** The mmproj's projector on [numTokens x hiddenDim] rows, natively; NON_FINITE for a non-finite input or output. */
  project(handle: VisionContextHandle, hidden: Float32Array, numTokens: number): Promise<Float32Array>;
  freeVisionContext(handle: VisionContextHandle): void;
  /** From inject.cpp: decodes embedding rows into a node-llama-cpp context's sequence. */
  decodeEmbeddings: DecodeEmbeddings;
}

/** The addon's own exports (src/native/*.cpp): errors carry a string `code`; the mmproj layout comes from src/mmproj.ts. */
interface NativeAddon extends Omit<NativeBinding, "createVisionContext"> {
  createVisionContext(mmprojPath: string, layout: VisionContextInfo, opts: VisionContextOptions): { native: unknown };
}

interface Manifest {
  nodeLlamaCpp: string;
  llamaCommit: string;
  addons: Array<{ binsDir: string; libllama: string; addon: string; hasInject: boolean }>;
}

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const buildScript = path.join(adapterDir, "scripts", "build-native.mjs");
const manifestPath = path.join(adapterDir, "build", "native", "manifest.json");
let loaded: NativeBinding | undefined;

/**
 * Loads the addon matching the libllama node-llama-cpp has loaded. Call after `await getLlama()`.
 * Throws LeanVisionError NATIVE_BUILD, saying what to run, when the addon is missing or mismatched.
 */
export function loadNativeBinding(): NativeBinding {
  if (loaded) return loaded;
  const libllama = loadedLibllama();
  if (!libllama) {
    throw nativeError("node-llama-cpp has not loaded its llama.cpp binaries yet; call `await getLlama()` before loading a vision model");
  }
  if (!existsSync(manifestPath)) {
    throw nativeError(`the LeanVision native addon is not built (no ${manifestPath}); run: node ${buildScript}`);
  }
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  const installed = nodeLlamaCppVersion();
  if (manifest.nodeLlamaCpp !== installed) {
    throw nativeError(`the native addon was built for node-llama-cpp ${manifest.nodeLlamaCpp} but ${installed} is installed; run: node ${buildScript}`);
  }
  const entry = manifest.addons.find((a) => existsSync(a.libllama) && realpathSync(a.libllama) === libllama);
  if (!entry) {
    throw nativeError(
      `node-llama-cpp is using ${libllama}, and no LeanVision addon was built against it ` +
        `(built for: ${manifest.addons.map((a) => a.binsDir).join(", ") || "none"}); run: node ${buildScript} --bins ${path.dirname(libllama)}`
    );
  }
  if (!existsSync(entry.addon)) throw nativeError(`${entry.addon} is missing; run: node ${buildScript}`);
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(entry.addon) as NativeAddon;
  } catch (err) {
    throw nativeError(`cannot load ${entry.addon} (${(err as Error).message}); rebuild it: node ${buildScript}`, err);
  }
  loaded = checkedBinding(addon);
  return loaded;
}

/** The addon behind the NativeBinding contract: mmprojs checked first, errors typed. */
function checkedBinding(addon: NativeAddon): NativeBinding {
  return {
    createVisionContext: typed((mmprojPath: string, opts: VisionContextOptions) => {
      const info = inspectMmproj(mmprojPath);
      return { native: addon.createVisionContext(mmprojPath, info, opts).native, info };
    }),
    encode: typed(addon.encode),
    encodeStock: typed(addon.encodeStock),
    prepareImage: typed(addon.prepareImage),
    encodeTile: typed(addon.encodeTile),
    project: typed(addon.project),
    freeVisionContext: typed(addon.freeVisionContext),
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

/** Real path of the libllama shared object loaded in this process, or undefined. */
function loadedLibllama(): string | undefined {
  const isLibllama = (file: string) => /^(lib)?llama(\.v[\d.]+)?\.(so|dylib|dll)$/.test(path.basename(file));
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
