// The vision half of the llama adapter: image → sharp decode → mtmd encode with the feature layer
// captured (native) → core reducer → the mmproj's projector on the kept tokens (native).
import { existsSync, statSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { decodeImage, DEFAULT_MAX_PIXELS } from "@leanvision/image";
import { countReduced, formatReducerSpec, LeanVisionError, reduceImage, reducerDefinition, reducerNeeds, toReducerSpec } from "@leanvision/core";
import type {
  EncodedImage,
  ImageFeatures,
  ImageInput,
  RawRgbImage,
  ReducedImage,
  ReducedTokens,
  ReducerInput,
  ReducerSpec,
  TileShape,
  TileTokenProvenance,
  TokenProvenance,
  VisionFeatures
} from "@leanvision/core";
import type { Llama, LlamaModel } from "node-llama-cpp";
import { anyresLayout, type AnyresLayout } from "./anyres.js";
import { DEFAULT_IMAGE_CACHE_BYTES, ImageCache } from "./image-cache.js";
import { loadNativeBinding, toLeanVisionError } from "./native-binding.js";
import type { NativeBinding, NativeVisionFeatures, ProjectorFileHandle, VisionContextHandle, VisionContextInfo } from "./native-binding.js";
import type { ProjectorFileInfo, TokenPackerProjectorFileInfo } from "./projector-file.js";

export type { ImageInput, RawRgbImage, EncodedImage } from "@leanvision/core";

export interface LoadVisionModelOptions {
  /** node-llama-cpp's `await getLlama()`. */
  llama: Llama;
  /** The language model the images are for; its n_embd must equal the mmproj's projection size. */
  model: LlamaModel;
  /** The model's mmproj GGUF (LLaVA `mlp` projector). */
  mmprojPath: string;
  /**
   * A LeanVision projector file (scripts/convert-tokenpacker.py) used instead of the mmproj's own
   * projector: an `mlp` one (e.g. fine-tuned for reduced tokens) for every reducer; a `tokenpacker`
   * one for the `tokenpacker` reducer, the other reducers keeping the mmproj's. Checked on load:
   * its input width against the encoder, its output width against the language model, and for
   * TokenPacker the grid and the encoder layers it reads (MMPROJ_MISMATCH otherwise).
   */
  projectorPath?: string;
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
  let projector: ProjectorFileHandle | null = null;
  try {
    if (options.projectorPath !== undefined) {
      if (typeof options.projectorPath !== "string" || options.projectorPath === "") {
        throw new LeanVisionError("INVALID_INPUT", "loadVisionModel: projectorPath must be the path of a LeanVision projector file (.gguf)");
      }
      projector = binding.loadProjectorFile(options.projectorPath, { nThreads: threads, useGpu: llama.gpu !== false });
      checkProjectorFile(projector.info, handle.info, mmprojPath, nEmbd);
    }
    // With a projector file, the mmproj's own projector may be for another width (e.g. a 7B LLaVA-1.5
    // mmproj as the CLIP tower of a 13B TokenPacker): only its use fails (projectorFor).
    if (!projector && handle.info.projectionDim !== nEmbd) {
      throw mmprojWidthError(mmprojPath, handle.info.projectionDim, nEmbd);
    }
  } catch (err) {
    if (projector) binding.freeProjectorFile(projector);
    binding.freeVisionContext(handle);
    throw toLeanVisionError(err);
  }
  return new LlamaVisionModel(binding, handle, llama, model, mmprojPath, new ImageCache(cacheBytes), options.maxPixels ?? DEFAULT_MAX_PIXELS, projector);
}

function mmprojWidthError(mmprojPath: string, projectionDim: number, nEmbd: number): LeanVisionError {
  return new LeanVisionError(
    "MMPROJ_MISMATCH",
    `${mmprojPath} projects to ${projectionDim} dimensions but the language model's embeddings have ${nEmbd}; ` +
      `use the mmproj made for this model`
  );
}

/** A projector file must fit the encoder it reads and the language model it writes for. */
function checkProjectorFile(p: ProjectorFileInfo, info: VisionContextInfo, mmprojPath: string, nEmbd: number): void {
  const mismatch = (why: string): never => {
    throw new LeanVisionError("MMPROJ_MISMATCH", `${p.path}: ${why}`);
  };
  if (p.inputDim !== info.hiddenDim) {
    mismatch(`the projector reads ${p.inputDim}-wide encoder features but the encoder of ${mmprojPath} gives ${info.hiddenDim}; use the projector trained on this vision tower`);
  }
  if (p.outputDim !== nEmbd) {
    mismatch(`the projector writes ${p.outputDim}-wide embeddings but the language model's are ${nEmbd}; use the projector trained with this language model`);
  }
  if (p.type !== "tokenpacker") return;
  if (info.gridRows !== p.gridSize || info.gridCols !== p.gridSize) {
    mismatch(`TokenPacker was trained on a ${p.gridSize}x${p.gridSize} patch grid but the encoder of ${mmprojPath} gives ${info.gridRows}x${info.gridCols}`);
  }
  // The llava graph runs layers 0..featureLayerIndex; Hugging Face's hidden_states[l] is the output of layer l-1.
  const deepest = info.featureLayerIndex + 1;
  if (p.featureLayer !== deepest) {
    mismatch(
      `TokenPacker reads its patch features from CLIP hidden state ${p.featureLayer} (and multi-level states ${p.multiLevelLayers.join(", ")}), ` +
        `but the graph of ${mmprojPath} stops at hidden state ${deepest} (clip.vision.block_count ${info.layers}` +
        `${deepest === info.layers ? "" : ", run up to block_count - 1 without clip.vision.feature_layer"}). ` +
        `Use an mmproj of the same tower that runs up to hidden state ${p.featureLayer}: clip.vision.feature_layer = [${p.featureLayer}] and at least ${p.featureLayer} blocks`
    );
  }
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
  private readonly projector: ProjectorFileHandle | null;
  private isDisposed = false;
  private encodeQueue: Promise<unknown> = Promise.resolve();

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
    private readonly maxPixels: number,
    projector: ProjectorFileHandle | null = null
  ) {
    this.imageCache = imageCache;
    this.binding = binding;
    this.handle = handle;
    this.projector = projector;
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
    return this.projector?.info.outputDim ?? this.info.projectionDim;
  }

  /** The projector file loaded with projectorPath, or null. */
  get projectorFile(): ProjectorFileInfo | null {
    return this.projector?.info ?? null;
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
    this.projectorFor(spec); // a reducer the loaded projector cannot serve fails here, before anything is decoded
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
  async encodeImage(image: ImageInput, reducer: ReducerInput = "none", options: EncodeOptions = {}): Promise<EncodedImage> {
    return (await this.streamImage(image, reducer, options)).done;
  }

  /**
   * Starts encoding an image tile by tile and returns as soon as its token count is known (from its
   * size: fixed budgets), or once it is encoded (adaptive budgets). Embedding rows become final in
   * order while later tiles still encode, so a caller can prefill them meanwhile (pipelined prefill):
   * tile by tile for `none` (mtmd's order) and per-tile reducers; the overview first, the rest at the
   * end, for a reducer that orders tiles itself but leads with tile 0 (VisionZip's NeXT order).
   */
  async streamImage(image: ImageInput, reducer: ReducerInput = "none", { cache = false }: EncodeOptions = {}): Promise<ImageStream> {
    this.assertUsable();
    const spec = toReducerSpec(reducer);
    this.projectorFor(spec);
    const t0 = performance.now();
    const rgb = await decodeImage(image, { maxPixels: this.maxPixels });
    const key = cache && this.imageCache.maxBytes > 0 ? ImageCache.key(rgb, formatReducerSpec(spec)) : undefined;
    const hit = key === undefined ? undefined : this.imageCache.get(key);
    if (hit) return finishedStream({ ...hit, fromCache: true, timings: { encodeMs: performance.now() - t0, reduceMs: 0, projectMs: 0 } });
    const numTokens = this.predictTokens(rgb, spec);
    const stream = new TileStream(numTokens, this.nEmbd);
    // Images encode one after the other in call order, so a chat's images become ready in turn.
    const done = this.encodeQueue.then(() => this.encodeTiles(rgb, spec, stream, t0)).then((encoded) => {
      if (key !== undefined) this.imageCache.set(key, encoded);
      return encoded;
    });
    this.encodeQueue = done.catch(() => undefined);
    stream.settle(done);
    if (numTokens === null) await done;
    return stream;
  }

  /** The tile loop behind streamImage: encode, reduce and project, rows published in order. */
  private async encodeTiles(rgb: RawRgbImage, spec: ReducerSpec, stream: TileStream, t0: number): Promise<EncodedImage> {
    const definition = reducerDefinition(spec);
    const needs = definition.needs(spec);
    const capture = needs.attention || needs.keys;
    const projector = this.projectorFor(spec);
    // TokenPacker's multi-level states: Hugging Face's hidden_states[l] is the output of encoder layer l-1.
    const levels = projector?.info.type === "tokenpacker" && needs.multiLevel ? projector.info.multiLevelLayers.map((l) => l - 1) : undefined;
    const timings = { reduceMs: 0, projectMs: 0 };
    const project = async (hidden: Float32Array, rows: number) => {
      const t = performance.now();
      const out = await this.call(() =>
        projector ? this.binding.runProjectorFile(projector, hidden, rows) : this.binding.project(this.handle, hidden, rows)
      );
      timings.projectMs += performance.now() - t;
      return out;
    };
    const prepared = await this.call(() => this.binding.prepareImage(this.handle, rgb.data, rgb.width, rgb.height));
    const { tileGrid } = this.tileLayout(rgb);
    const order = mtmdTileOrder(tileGrid, prepared.tiles);
    // Tiles are encoded in the order their rows are fed: mtmd's for the stock rows, else overview first.
    const encodeOrder = needs.stock ? order.map((_, i) => i) : order;
    // Rows that can go before every tile is encoded: each tile's own (none, per-tile reducers), or tile 0's.
    const perTile = stream.numTokens !== null && (needs.stock || !definition.reduceImage);
    const leading = stream.numTokens !== null && !perTile && definition.leadsWithTile0 === true;
    const native: NativeVisionFeatures[] = new Array(prepared.tiles);
    const tiles: VisionFeatures[] = new Array(prepared.tiles);
    const ownTiles: ReducedTokens[] = [];
    for (const nativeIndex of encodeOrder) {
      native[nativeIndex] = await this.call(() => this.binding.encodeTile(this.handle, prepared, nativeIndex, levels ? { capture, levels } : { capture }));
      const tile = order.indexOf(nativeIndex);
      tiles[tile] = toVisionFeatures(native[nativeIndex]);
      if (!perTile && !(leading && tile === 0)) continue;
      const t = performance.now();
      const own = needs.stock ? stockRows(tiles[tile], native[nativeIndex].projectorRows) : definition.reduce(tiles[tile], spec);
      ownTiles[tile] = own;
      timings.reduceMs += performance.now() - t;
      stream.publish(await project(own.hidden, own.numTokens));
    }
    const features: ImageFeatures = { tiles, tileGrid, width: rgb.width, height: rgb.height };
    const t = performance.now();
    const reduced = perTile ? concatRows(ownTiles, needs.stock ? encodeOrder.map((i) => order.indexOf(i)) : order.map((_, i) => i)) : reduceImage(features, spec);
    timings.reduceMs += performance.now() - t;
    if (stream.ready < reduced.numTokens) {
      const from = stream.ready;
      if (leading && (reduced.tiles[0].numTokens !== from || reduced.provenance.slice(0, from).some((p) => p.tile !== 0))) {
        throw new LeanVisionError("INVALID_FEATURES", `reducer ${formatReducerSpec(spec)} says it leads with tile 0's tokens, but its image output does not`);
      }
      stream.publish(await project(reduced.hidden.subarray(from * reduced.dim), reduced.numTokens - from));
    }
    return {
      width: rgb.width,
      height: rgb.height,
      features,
      reduced,
      embeddings: stream.result(reduced.numTokens),
      numTokens: reduced.numTokens,
      nEmbd: this.nEmbd,
      reducer: formatReducerSpec(spec),
      // encodeMs: decode, preprocessing and the tiles' encodes (everything but reducing and projecting).
      timings: { ...timings, encodeMs: performance.now() - t0 - timings.reduceMs - timings.projectMs },
      fromCache: false
    };
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
    if (this.projector) this.binding.freeProjectorFile(this.projector);
  }

  /**
   * The projector file a reducer's rows go to, or null for the mmproj's own projector. A reducer that
   * needs multi-level states goes to the TokenPacker file (which names the layers), at its scale; an
   * `mlp` file replaces the mmproj's projector for every other reducer.
   */
  private projectorFor(spec: ReturnType<typeof toReducerSpec>): ProjectorFileHandle | null {
    const p = this.projector;
    if (reducerNeeds(spec).multiLevel) {
      if (p?.info.type !== "tokenpacker") {
        throw new LeanVisionError(
          "INVALID_SPEC",
          `the ${formatReducerSpec(spec)} reducer needs a TokenPacker projector (the trained projector and the encoder layers it reads); ` +
            `load the vision model with loadVisionModel({ ..., projectorPath }) and a projector file from scripts/convert-tokenpacker.py` +
            (p ? ` (${p.info.path} is an ${p.info.type} projector)` : "")
        );
      }
      const info: TokenPackerProjectorFileInfo = p.info;
      if (spec.kind === "tokenpacker" && spec.scale !== info.scaleFactor) {
        throw new LeanVisionError(
          "INVALID_SPEC",
          `${formatReducerSpec(spec)} packs ${spec.scale}x${spec.scale} regions but the TokenPacker projector ${info.path} was trained on ` +
            `${info.scaleFactor}x${info.scaleFactor} (tokenpacker:${info.scaleFactor}); use that, or the checkpoint trained for ${spec.scale}x${spec.scale}`
        );
      }
      return p;
    }
    if (p?.info.type === "mlp") return p;
    if (this.info.projectionDim !== this.nEmbd) throw mmprojWidthError(this.mmprojPath, this.info.projectionDim, this.nEmbd);
    return null;
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
  if (n.multiLevel) Object.assign(f, { multiLevel: n.multiLevel, multiLevelDim: n.multiLevelDim });
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
 * The `none` reducer on one tile: exactly the rows llama.cpp's llava graph feeds its projector, so the
 * embeddings equal mtmd's own. For a CLS model that graph appends CLS after the patches yet selects
 * rows 1..numTokens-1, i.e. it drops patch 0 and feeds CLS last; provenance records that as it is.
 * mtmd adds no rows of its own (no image newline, see ARCHITECTURE.md).
 */
function stockRows(f: VisionFeatures, rows: Int32Array): ReducedTokens {
  const hidden = new Float32Array(rows.length * f.dim);
  const provenance: TokenProvenance[] = [];
  rows.forEach((row, i) => {
    hidden.set(f.hidden.subarray(row * f.dim, (row + 1) * f.dim), i * f.dim);
    provenance.push({ kind: row === f.clsIndex ? "cls" : "patch", sources: Int32Array.of(row) });
  });
  return { hidden, numTokens: rows.length, dim: f.dim, provenance };
}

/** Tiles' own reductions (indexed by tile) as one image, their rows in `rowOrder` (tile indices). */
function concatRows(tiles: ReducedTokens[], rowOrder: number[]): ReducedImage {
  const { dim } = tiles[0];
  const numTokens = tiles.reduce((n, t) => n + t.numTokens, 0);
  const hidden = new Float32Array(numTokens * dim);
  const provenance: TileTokenProvenance[] = [];
  for (const tile of rowOrder) {
    hidden.set(tiles[tile].hidden, provenance.length * dim);
    for (const p of tiles[tile].provenance) provenance.push({ ...p, tile });
  }
  return { hidden, numTokens, dim, provenance, tiles };
}

/** An image being encoded tile by tile (LlamaVisionModel.streamImage). */
export interface ImageStream {
  /** Embeddings the image takes; null only until `done` when it depends on the content (adaptive budgets). */
  readonly numTokens: number | null;
  /** [numTokens x nEmbd]: rows [0, ready) are final. */
  readonly embeddings: Float32Array;
  /** Rows final so far. */
  readonly ready: number;
  /** Resolves once at least `rows` rows are final; rejects with the encode's error. */
  waitFor(rows: number): Promise<void>;
  /** The encoded image, once every tile is done. */
  readonly done: Promise<EncodedImage>;
}

/** Rows published in order into a buffer sized from the predicted count; waiters woken as rows arrive. */
class TileStream implements ImageStream {
  ready = 0;
  embeddings: Float32Array;
  done!: Promise<EncodedImage>;
  private failure: unknown;
  private failed = false;
  private waiters: Array<{ rows: number; resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(
    readonly numTokens: number | null,
    private readonly nEmbd: number
  ) {
    this.embeddings = new Float32Array((numTokens ?? 0) * nEmbd);
  }

  settle(done: Promise<EncodedImage>): void {
    this.done = done;
    done.then(
      () => this.wake(),
      (error: unknown) => {
        this.failed = true;
        this.failure = error;
        this.wake();
      }
    );
  }

  publish(rows: Float32Array): void {
    const count = rows.length / this.nEmbd;
    if (this.numTokens === null) {
      // Unknown count: grow (no one waits on rows before `done`).
      const grown = new Float32Array(this.embeddings.length + rows.length);
      grown.set(this.embeddings);
      this.embeddings = grown;
    } else if (this.ready + count > this.numTokens) {
      throw new LeanVisionError("ENCODE_FAILED", `the image gave more embeddings than the ${this.numTokens} its size predicts`);
    }
    this.embeddings.set(rows, this.ready * this.nEmbd);
    this.ready += count;
    this.wake();
  }

  /** The buffer, checked to be complete. */
  result(numTokens: number): Float32Array {
    if (this.ready !== numTokens || (this.numTokens !== null && this.numTokens !== numTokens)) {
      throw new LeanVisionError("ENCODE_FAILED", `the image gave ${numTokens} embeddings but ${this.numTokens ?? this.ready} were expected`);
    }
    return this.embeddings;
  }

  waitFor(rows: number): Promise<void> {
    if (this.ready >= rows) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ rows, resolve, reject }));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (this.ready >= w.rows) w.resolve();
      else if (this.failed) w.reject(this.failure);
      else return true;
      return false;
    });
  }
}

/** A stream of an image that is already encoded (an image cache hit). */
function finishedStream(encoded: EncodedImage): ImageStream {
  return { numTokens: encoded.numTokens, embeddings: encoded.embeddings, ready: encoded.numTokens, waitFor: () => Promise.resolve(), done: Promise.resolve(encoded) };
}
