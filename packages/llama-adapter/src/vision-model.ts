// The vision half of the llama adapter: image → sharp decode → mtmd encode with the feature layer
// captured (native) → core reducer → the mmproj's projector on the kept tokens (native).
import { existsSync, statSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { decodeImage, DEFAULT_MAX_PIXELS } from "@leanvision/image";
import { countReduced, formatReducerSpec, LeanVisionError, reduceImage, reducerNeeds, toReducerSpec } from "@leanvision/core";
import type {
  EncodedImage,
  ImageFeatures,
  ImageInput,
  RawRgbImage,
  ReducedImage,
  ReducerInput,
  ReducerSpec,
  TileShape,
  TileTokenProvenance,
  VisionFeatures
} from "@leanvision/core";
import type { Llama, LlamaModel } from "node-llama-cpp";
import { anyresLayout, type AnyresLayout } from "./anyres.js";
import { DEFAULT_IMAGE_CACHE_BYTES, ImageCache } from "./image-cache.js";
import { loadNativeBinding, toLeanVisionError } from "./native-binding.js";
import type { NativeBinding, NativeVisionFeatures, VisionContextHandle, VisionContextInfo } from "./native-binding.js";

export type { ImageInput, RawRgbImage, EncodedImage } from "@leanvision/core";

export interface LoadVisionModelOptions {
  /** node-llama-cpp's `await getLlama()`. */
  llama: Llama;
  /** The language model the images are for; its n_embd must equal the mmproj's projection size. */
  model: LlamaModel;
  /** The model's mmproj GGUF (LLaVA `mlp` projector). */
  mmprojPath: string;
  /** CPU threads for the vision encoder; default: node-llama-cpp's math cores. */
  threads?: number;
  /** Images of more pixels are refused (IMAGE_TOO_LARGE) from their header, before decoding; default 50 megapixels. */
  maxPixels?: number;
  /**
   * Bound in bytes of the cache of encoded images chats share (same pixels + same reducer are encoded
   * once); default DEFAULT_IMAGE_CACHE_BYTES (256 MiB), 0 turns it off.
   */
  imageCacheBytes?: number;
}

export interface EncodeOptions {
  /** Serve a repeat of an image from the vision model's image cache, and cache this one (default false; chats pass true). */
  cache?: boolean;
}

/** Loads an mmproj for `model`. Call after `await getLlama()`. */
export async function loadVisionModel(options: LoadVisionModelOptions): Promise<LlamaVisionModel> {
  const { llama, model, mmprojPath } = options ?? ({} as LoadVisionModelOptions);
  if (llama == null || typeof llama !== "object" || model == null || typeof model !== "object") {
    throw new LeanVisionError("INVALID_INPUT", "loadVisionModel({ llama, model, mmprojPath }): pass node-llama-cpp's `await getLlama()` and a loaded `LlamaModel`");
  }
  if (model.disposed) throw new LeanVisionError("DISPOSED", "the language model is disposed; load it again before loading its vision model");
  if (typeof mmprojPath !== "string" || mmprojPath === "") {
    throw new LeanVisionError("INVALID_INPUT", "loadVisionModel: mmprojPath must be the path of the model's mmproj GGUF");
  }
  const threads = options.threads ?? Math.max(1, llama.cpuMathCores);
  if (!Number.isInteger(threads) || threads < 1) throw new LeanVisionError("INVALID_INPUT", `threads must be a positive integer (got ${threads})`);

  const cacheBytes = options.imageCacheBytes ?? DEFAULT_IMAGE_CACHE_BYTES;
  if (!Number.isInteger(cacheBytes) || cacheBytes < 0) throw new LeanVisionError("INVALID_INPUT", `imageCacheBytes must be a non-negative integer (got ${cacheBytes})`);
  const binding = loadNativeBinding();
  let handle: VisionContextHandle;
  try {
    handle = binding.createVisionContext(mmprojPath, { nThreads: threads, useGpu: llama.gpu !== false });
  } catch (err) {
    throw toLeanVisionError(err);
  }
  const nEmbd = model.embeddingVectorSize;
  if (handle.info.projectionDim !== nEmbd) {
    binding.freeVisionContext(handle);
    throw new LeanVisionError(
      "MMPROJ_MISMATCH",
      `${mmprojPath} projects to ${handle.info.projectionDim} dimensions but the language model's embeddings have ${nEmbd}; ` +
        `use the mmproj made for this model`
    );
  }
  return new LlamaVisionModel(binding, handle, llama, model, mmprojPath, new ImageCache(cacheBytes), options.maxPixels ?? DEFAULT_MAX_PIXELS);
}

/**
 * An mmproj loaded for a language model: shared, immutable state. Any number of chat sessions use
 * one, each with its own reducer (the reducer is an argument of every encode, never state here).
 */
export class LlamaVisionModel {
  readonly llama: Llama;
  readonly model: LlamaModel;
  readonly mmprojPath: string;
  readonly info: VisionContextInfo;
  /** Where the vision graph runs (VisionContextHandle.backend). */
  readonly backend: string;
  private readonly binding: NativeBinding;
  private readonly handle: VisionContextHandle;
  private isDisposed = false;

  /** Encoded images, shared by every session of this vision model. */
  readonly imageCache: ImageCache;

  /** @internal use loadVisionModel() */
  constructor(
    binding: NativeBinding,
    handle: VisionContextHandle,
    llama: Llama,
    model: LlamaModel,
    mmprojPath: string,
    imageCache: ImageCache,
    private readonly maxPixels: number
  ) {
    this.imageCache = imageCache;
    this.binding = binding;
    this.handle = handle;
    this.llama = llama;
    this.model = model;
    this.mmprojPath = mmprojPath;
    this.info = handle.info;
    this.backend = handle.backend;
  }

  get disposed(): boolean {
    return this.isDisposed;
  }

  /** Size of one embedding row (the language model's n_embd). */
  get nEmbd(): number {
    return this.info.projectionDim;
  }

  /** The native injection entry point (inject.cpp), for VisionChatSession. */
  get decodeEmbeddings(): NativeBinding["decodeEmbeddings"] {
    return this.binding.decodeEmbeddings;
  }

  /**
   * The tiles an image of this size becomes, before it is encoded, in ImageFeatures order (the
   * overview, then the high-resolution tiles row-major over tileGrid). LLaVA-1.5, or no size given:
   * one tile. LLaVA-1.6 (pinpoints): mtmd's any-resolution tiling (anyres.ts).
   */
  tileShapes(size?: { width: number; height: number }): TileShape[] {
    const { gridRows: rows, gridCols: cols, hasCls } = this.info;
    const { tileGrid } = this.tileLayout(size);
    // llama.cpp's llava graph appends CLS after the patches; every tile is one image_size square.
    const tile = (): TileShape => ({ numTokens: rows * cols + (hasCls ? 1 : 0), grid: { rows, cols }, clsIndex: hasCls ? rows * cols : null });
    return Array.from({ length: 1 + tileGrid.rows * tileGrid.cols }, tile);
  }

  /** The high-resolution tile grid of an image of this size ({ rows: 0, cols: 0 }: the overview alone). */
  tileLayout(size?: { width: number; height: number }): AnyresLayout {
    const none: AnyresLayout = { tileGrid: { rows: 0, cols: 0 }, canvas: { width: 0, height: 0 } };
    return size ? anyresLayout(size.width, size.height, this.info.imageSize, this.info.gridPinpoints) : none;
  }

  /**
   * How many embeddings an image takes with a reducer, without prefilling anything. Exact from the
   * mmproj's geometry and the image's size where the reducer's count does not depend on the image's
   * content; otherwise (adaptive budgets) the image is encoded and reduced.
   */
  async countTokens(image: ImageInput, reducer: ReducerInput = "none"): Promise<number> {
    this.assertUsable();
    const spec = toReducerSpec(reducer);
    const rgb = await decodeImage(image, { maxPixels: this.maxPixels }); // the same input errors as encodeImage
    return this.predictTokens(rgb, spec) ?? (await this.encodeImage(rgb, spec)).numTokens;
  }

  /** The embeddings an image of this size takes with `spec`, when that does not depend on its content (else null). */
  predictTokens(size: { width: number; height: number }, spec: ReducerSpec): number | null {
    return countReduced(this.tileShapes(size), spec);
  }

  /** Decodes an image input to RGB with this model's pixel limit (the decode every encode starts with). */
  decodeImage(image: ImageInput): Promise<RawRgbImage> {
    return decodeImage(image, { maxPixels: this.maxPixels });
  }

  /** Encodes an image, reduces it with `reducer` (default none) and projects the kept tokens. */
  async encodeImage(image: ImageInput, reducer: ReducerInput = "none", { cache = false }: EncodeOptions = {}): Promise<EncodedImage> {
    this.assertUsable();
    const spec = toReducerSpec(reducer);
    const needs = reducerNeeds(spec);
    const t0 = performance.now();
    const rgb = await decodeImage(image, { maxPixels: this.maxPixels });
    const key = cache && this.imageCache.maxBytes > 0 ? ImageCache.key(rgb, formatReducerSpec(spec)) : undefined;
    const hit = key === undefined ? undefined : this.imageCache.get(key);
    if (hit) return { ...hit, fromCache: true, timings: { encodeMs: performance.now() - t0, reduceMs: 0, projectMs: 0 } };
    const capture = needs.attention || needs.keys;
    const native = await this.call(() => this.binding.encode(this.handle, rgb.data, rgb.width, rgb.height, { capture }));
    const { tileGrid } = this.tileLayout(rgb);
    const order = mtmdTileOrder(tileGrid, native.length);
    const features: ImageFeatures = { tiles: order.map((i) => toVisionFeatures(native[i])), tileGrid, width: rgb.width, height: rgb.height };
    const t1 = performance.now();
    const reduced = needs.stock ? stockSelection(features, order, native) : reduceImage(features, spec);
    const t2 = performance.now();
    const embeddings = await this.call(() => this.binding.project(this.handle, reduced.hidden, reduced.numTokens));
    const t3 = performance.now();
    const encoded: EncodedImage = {
      width: rgb.width,
      height: rgb.height,
      features,
      reduced,
      embeddings,
      numTokens: reduced.numTokens,
      nEmbd: this.nEmbd,
      reducer: formatReducerSpec(spec),
      timings: { encodeMs: t1 - t0, reduceMs: t2 - t1, projectMs: t3 - t2 },
      fromCache: false
    };
    if (key !== undefined) this.imageCache.set(key, encoded);
    return encoded;
  }

  /**
   * llama.cpp's own mtmd output for the image (no capture, its own projector in the same graph):
   * the reference the `none` reducer must match, and the baseline for the cost of capture.
   */
  async encodeImageStock(image: ImageInput): Promise<{ embeddings: Float32Array; numTokens: number; encodeMs: number }> {
    this.assertUsable();
    const rgb = await decodeImage(image, { maxPixels: this.maxPixels });
    const t0 = performance.now();
    const embeddings = await this.call(() => this.binding.encodeStock(this.handle, rgb.data, rgb.width, rgb.height));
    return { embeddings, numTokens: embeddings.length / this.nEmbd, encodeMs: performance.now() - t0 };
  }

  /** Frees the native vision context (waits for an encode in flight). Idempotent. */
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    this.imageCache.clear();
    this.binding.freeVisionContext(this.handle);
  }

  private assertUsable(): void {
    if (this.isDisposed) throw new LeanVisionError("DISPOSED", "this vision model is disposed; load it again with loadVisionModel()");
    if (this.model.disposed) throw new LeanVisionError("DISPOSED", "the language model of this vision model is disposed");
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toLeanVisionError(err);
    }
  }
}

function toVisionFeatures(n: NativeVisionFeatures): VisionFeatures {
  const f: VisionFeatures = {
    hidden: n.hidden,
    numTokens: n.numTokens,
    dim: n.dim,
    grid: { rows: n.gridRows, cols: n.gridCols },
    clsIndex: n.clsIndex
  };
  if (n.keys) Object.assign(f, { attentionScores: n.attentionScores, heads: n.heads, keys: n.keys, keyDim: n.keyDim });
  if (n.attention) f.attention = n.attention;
  return f;
}

/**
 * Where each ImageFeatures tile is among mtmd's tiles: mtmd puts LLaVA-1.6's high-resolution tiles
 * first (row-major) and the overview last; ImageFeatures has the overview first. ENCODE_FAILED when
 * mtmd made a different number of tiles than anyres.ts predicted.
 */
function mtmdTileOrder(tileGrid: { rows: number; cols: number }, mtmdTiles: number): number[] {
  const expected = 1 + tileGrid.rows * tileGrid.cols;
  if (mtmdTiles !== expected) {
    throw new LeanVisionError("ENCODE_FAILED", `mtmd cut the image into ${mtmdTiles} tiles but its pinpoints give ${expected} (a ${tileGrid.rows}x${tileGrid.cols} grid plus the overview)`);
  }
  return expected === 1 ? [0] : [expected - 1, ...Array.from({ length: expected - 1 }, (_, i) => i)];
}

/**
 * The `none` reducer: exactly the rows llama.cpp's llava graph feeds its projector, tile by tile in
 * mtmd's order, so the embeddings equal mtmd's own. For a CLS model that graph appends CLS after the
 * patches yet selects rows 1..numTokens-1, i.e. it drops patch 0 and feeds CLS last; provenance
 * records that as it is. mtmd adds no rows of its own (no image newline, see ARCHITECTURE.md).
 */
function stockSelection(image: ImageFeatures, order: number[], native: NativeVisionFeatures[]): ReducedImage {
  const { dim } = image.tiles[0];
  const numTokens = native.reduce((n, t) => n + t.projectorRows.length, 0);
  const hidden = new Float32Array(numTokens * dim);
  const provenance: TileTokenProvenance[] = [];
  const tiles: ReducedImage["tiles"] = [];
  // Tile t of the image is native[order[t]]; the rows go in native (mtmd) order.
  const tileOf = new Map(order.map((nativeIndex, tile) => [nativeIndex, tile]));
  native.forEach(({ projectorRows: rows }, nativeIndex) => {
    const tile = tileOf.get(nativeIndex)!;
    const f = image.tiles[tile];
    const start = provenance.length;
    rows.forEach((row) => {
      hidden.set(f.hidden.subarray(row * dim, (row + 1) * dim), provenance.length * dim);
      provenance.push({ kind: row === f.clsIndex ? "cls" : "patch", sources: Int32Array.of(row), tile });
    });
    const own = provenance.slice(start).map(({ kind, sources }) => ({ kind, sources }));
    tiles[tile] = { hidden: hidden.subarray(start * dim, provenance.length * dim), numTokens: own.length, dim, provenance: own };
  });
  return { hidden, numTokens, dim, provenance, tiles };
}
