// withLeanVision: wraps a loaded transformers.js LLaVA-style model (LLaVA-1.5, LLaVA-OneVision,
// nanoLLaVA) and its processor so images are reduced before the language model sees them. The vision
// encoder graph is split once (see instrument.ts); the processor expands `<image>` to the reduced
// token count (also for repos whose AutoProcessor is only an image processor); model.encode_image runs
// the features graph, the reducer and the projector on the kept tokens; `generate` is transformers.js's own.
// With a TokenPacker projector file (projectorPath, ONNX), the features graph also gives the multi-level
// hidden states the file names, and the `tokenpacker` reducer's rows go through that projector instead.
import {
  formatReducerSpec,
  LeanVisionError,
  reduceImage,
  reducerNeeds,
  registeredReducers,
  toReducerSpec,
  type ImageFeatures,
  type ReducedImage,
  type ReducerInput,
  type ReducerSpec,
  type TileShape,
  type VisionFeatures
} from "@leanvision/core";
import { AsyncLocalStorage } from "node:async_hooks";
import { env, Tensor, type PreTrainedModel, type PreTrainedTokenizer, type Processor } from "@huggingface/transformers";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { splitVisionEncoder, type MissingTensor, type VisionSplit } from "./instrument.js";
import { inspectOnnxProjectorFile, type OnnxProjectorFileInfo } from "./projector-file.js";

/** The parts of onnxruntime's InferenceSession the adapter uses (the same runtime transformers.js loaded). */
interface OrtTensor {
  data: unknown;
  dims: readonly number[];
}
interface OrtSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, unknown>, ...rest: unknown[]): Promise<Record<string, OrtTensor>>;
  release?(): Promise<void>;
}
interface OrtSessionClass {
  create(pathOrBytes: string | Uint8Array, options?: object): Promise<OrtSession>;
}

/** The transformers.js objects withLeanVision touches. Typed loosely: transformers.js ships JS with JSDoc types. */
export interface LlavaLikeModel {
  config: { image_token_index?: number; image_token_id?: number; vision_config?: { patch_size?: number; image_size?: number }; [k: string]: unknown };
  sessions: Record<string, OrtSession>;
  encode_image(inputs: { pixel_values: Tensor }): Promise<Tensor>;
  generate(options: Record<string, unknown>): Promise<unknown>;
}
export type LlavaLikeTokenizer = ((text: string | string[], kwargs?: object) => Record<string, Tensor>) & Record<string, any>;
export interface LlavaLikeProcessor {
  image_processor: (images: unknown, kwargs?: object) => Promise<{ pixel_values: Tensor; [k: string]: unknown }>;
  /** LlavaProcessor has one; the bare Processor OneVision and nanoLLaVA get in transformers.js 4.3 does not. */
  tokenizer?: LlavaLikeTokenizer;
  config?: { image_token?: string; [k: string]: unknown };
  _call(images: unknown, text?: string | string[] | null, kwargs?: object): Promise<Record<string, unknown>>;
}

export interface WithLeanVisionOptions {
  /** From LlavaForConditionalGeneration.from_pretrained(folder). */
  model: PreTrainedModel | LlavaLikeModel;
  /** From AutoProcessor.from_pretrained(folder). */
  processor: Processor | LlavaLikeProcessor;
  /**
   * From AutoTokenizer.from_pretrained(folder), for models whose AutoProcessor has no tokenizer
   * (LLaVA-OneVision, nanoLLaVA in transformers.js 4.3: only the image processor). Ignored when the
   * processor has one.
   */
  tokenizer?: PreTrainedTokenizer | LlavaLikeTokenizer;
  /** Reducer of calls made straight to the model (processor + generate); chats pass their own. Default none. */
  reducer?: ReducerInput;
  /**
   * What was given to from_pretrained: a local folder (or its onnx/vision_encoder*.onnx), or a repo id
   * such as "Xenova/nanoLLaVA", looked up in transformers.js's env.localModelPath and env.cacheDir (where
   * it keeps downloaded files). transformers.js does not keep it. Needed the first time a model is
   * wrapped; later wrappers of the same model share the split.
   */
  modelPath?: string;
  /** Where the split graphs are cached; defaults to $LEANVISION_CACHE_DIR or ~/.cache/leanvision. */
  cacheDir?: string;
  /** onnxruntime intra-op threads of the split vision sessions (features + projector), set when a model is first wrapped; default: onnxruntime's own. */
  visionThreads?: number;
  /**
   * A TokenPacker projector file in ONNX (the llama adapter's scripts/convert-tokenpacker.py CHECKPOINT --onnx
   * tokenpacker.onnx): the `tokenpacker` reducer's rows go through it, and the vision encoder's split also gives
   * the multi-level hidden states it names. Its widths, grid and feature layer must fit the model
   * (MMPROJ_MISMATCH otherwise). Set when a model is first wrapped; later wrappers share it.
   */
  projectorPath?: string;
}

/** One image as it went through the reducer (before the projector); sizes are the processor's output. */
export interface ReducedImageRecord {
  width: number;
  height: number;
  features: ImageFeatures;
  reduced: ReducedImage;
}

export interface ImageEncodeTimings {
  encodeMs: number;
  reduceMs: number;
  projectMs: number;
}

interface Prepared {
  spec: string;
  /** The reducer's rows go to the TokenPacker projector file (its needs ask for multi-level states). */
  tokenPacker: boolean;
  images: ReducedImageRecord[];
  encodeMs: number;
  reduceMs: number;
}

/** What one call through the hooks (a chat turn, or withReducer) saw: its reducer and what it ran. */
export interface CallRecord {
  readonly spec: ReducerSpec;
  images: ReducedImageRecord[];
  timings: ImageEncodeTimings;
  decoderCalls: DecoderCall[];
}

/**
 * The call in progress, per async context: concurrent chats over one model each see their own
 * reducer and records, whatever runs in between.
 */
const calls = new AsyncLocalStorage<{ lean: LeanVisionLlava; record: CallRecord }>();

export interface DecoderCall {
  ms: number;
  /** New positions run through the decoder. */
  tokens: number;
  /** Positions taken from past_key_values. */
  past: number;
}

/**
 * What withLeanVision installs on one model, shared by every wrapper of that model: the split
 * sessions and the hooks. A call made inside lean.withReducer (every chat turn is) uses that call's
 * reducer; a call straight to the model uses the newest live wrapper's default reducer.
 */
interface Installation {
  model: LlavaLikeModel;
  processor: LlavaLikeProcessor;
  tokenizer: LlavaLikeTokenizer;
  /** The text of the image token (`<image>`). */
  imageToken: string;
  /** The model's folder (config.json, onnx/…). */
  modelDir: string;
  features: OrtSession;
  projector: OrtSession;
  /** The TokenPacker projector file (projectorPath) and its session, or null. */
  tokenPacker: { info: OnnxProjectorFileInfo; session: OrtSession } | null;
  split: SplitInfo;
  members: Set<LeanVisionLlava>;
  active: LeanVisionLlava | null;
  restore: Array<() => void>;
}

const installations = new WeakMap<object, Installation>();

export class LeanVisionLlava {
  /** Images and timings of the most recent encode_image call through this wrapper (a chat's turn records its own). */
  lastImages: ReducedImageRecord[] = [];
  lastTimings: ImageEncodeTimings = { encodeMs: 0, reduceMs: 0, projectMs: 0 };
  /** Decoder runs outside withReducer while this wrapper was the newest, since the last clearDecoderCalls(). */
  decoderCalls: DecoderCall[] = [];
  /** The default reducer (calls straight to the model); immutable, chats and withReducer pass their own. */
  readonly reducer: ReducerSpec;

  private disposed = false;
  private readonly prepared = new WeakMap<object, Map<string, Prepared>>();

  /** @internal use withLeanVision() */
  constructor(
    /** @internal */
    readonly installation: Installation,
    reducer: ReducerSpec
  ) {
    this.reducer = reducer;
  }

  get model(): LlavaLikeModel {
    return this.installation.model;
  }
  get processor(): LlavaLikeProcessor {
    return this.installation.processor;
  }
  /** The processor's tokenizer, or the one passed to withLeanVision when the processor has none. */
  get tokenizer(): LlavaLikeTokenizer {
    return this.installation.tokenizer;
  }
  /** The image placeholder in prompts (`<image>`); one per image, expanded to the image's kept tokens. */
  get imageToken(): string {
    return this.installation.imageToken;
  }
  /** The folder the model was loaded from (the one holding config.json and onnx/). */
  get modelDir(): string {
    return this.installation.modelDir;
  }
  /** What the graph split found in vision_encoder.onnx, and what it could not expose. */
  get split(): SplitInfo {
    return this.installation.split;
  }
  /** One image's tile at the vision encoder's own size (vision_config.image_size / patch_size), CLS first where the model has one. */
  get tileShape(): TileShape {
    // LLaVA-1.5's CLIP-336/14 when the config does not say (every transformers.js LLaVA config does).
    const cls = this.split.found.cls;
    return configTileShape(this.model.config.vision_config, cls) ?? configTileShape({ image_size: 336, patch_size: 14 }, cls)!;
  }
  /** The TokenPacker projector file loaded with projectorPath, or null. */
  get projectorFile(): OnnxProjectorFileInfo | null {
    return this.installation.tokenPacker?.info ?? null;
  }

  /**
   * Throws UNSUPPORTED_MODEL when the split vision encoder cannot give what the reducer needs,
   * naming the missing tensor and the reducers that work with this model; INVALID_SPEC for a reducer
   * that needs a TokenPacker projector file this model was not wrapped with (or another scale).
   */
  checkSupported(reducer: ReducerInput): void {
    const spec = toReducerSpec(reducer);
    const projector = this.installation.tokenPacker?.info ?? null;
    checkSupported(spec, this.split.missing, projector);
    checkProjector(spec, projector);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Runs `fn` (which calls the processor and model.generate) with `reducer`; concurrent calls with
   * other reducers do not affect it. Returns what fn returns.
   */
  async withReducer<T>(reducer: ReducerInput, fn: () => Promise<T>): Promise<T> {
    return (await this.recorded(reducer, fn)).result;
  }

  /** @internal withReducer, plus what the call encoded and decoded. */
  async recorded<T>(reducer: ReducerInput, fn: () => Promise<T>): Promise<{ result: T; record: CallRecord }> {
    this.assertLive();
    const record: CallRecord = { spec: toReducerSpec(reducer), images: [], timings: { encodeMs: 0, reduceMs: 0, projectMs: 0 }, decoderCalls: [] };
    const result = await calls.run({ lean: this, record }, fn);
    return { result, record };
  }

  /** The call in progress on this model, if any. @internal */
  currentCall(): CallRecord | undefined {
    const call = calls.getStore();
    return call && call.lean.installation === this.installation ? call.record : undefined;
  }

  /** Runs the features graph and the reducer; the token counts decide how `<image>` expands. */
  async prepareImages(pixelValues: Tensor, reducer?: ReducerInput): Promise<Prepared> {
    this.assertLive();
    const specObject = reducer === undefined ? (this.currentCall()?.spec ?? this.reducer) : toReducerSpec(reducer);
    const spec = formatReducerSpec(specObject);
    const key = pixelValues.data as object;
    const cached = this.prepared.get(key)?.get(spec);
    if (cached) return cached;
    this.checkSupported(specObject);

    const [batch, , height, width] = pixelValues.dims;
    const patch = this.model.config.vision_config?.patch_size ?? 14;
    const rows = Math.floor(height / patch);
    const cols = Math.floor(width / patch);
    const needs = reducerNeeds(specObject);
    let t0 = performance.now();
    const { features, tokenPacker } = this.installation;
    const { names, found } = this.split;
    const multiLevelName = needs.multiLevel ? names.multiLevel : "";
    // Only the outputs this reducer reads come back from onnxruntime.
    const fetches = [names.hidden, needs.attention ? names.score : "", needs.keys ? names.headKeys : "", multiLevelName].filter(Boolean);
    const out = await features.run({ [features.inputNames[0]]: pixelValues.ort_tensor }, fetches);
    const encodeMs = performance.now() - t0;
    const hidden = out[names.hidden];
    const [, tokens, dim] = hidden.dims;
    const clsIndex = found.cls ? 0 : null;
    if (tokens !== rows * cols + (found.cls ? 1 : 0)) {
      throw new LeanVisionError(
        "UNSUPPORTED_MODEL",
        `the feature layer has ${tokens} tokens but a ${height}x${width} image with patch ${patch} has ${rows}x${cols} patches${found.cls ? " + CLS" : ""}`
      );
    }
    // In-graph, float32 whatever the graph computes in: VisionZip's score per token and the keys averaged over heads.
    const score = needs.attention ? out[names.score] : undefined;
    const keys = needs.keys ? out[names.headKeys] : undefined;
    const keyDim = keys?.dims[2] ?? 0;
    if ((score && (score.dims[1] !== tokens || score.dims.length !== 2)) || (keys && keys.dims[1] !== tokens)) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", `the split encoder's score [${score?.dims}] / keys [${keys?.dims}] do not match its ${tokens} tokens`);
    }
    const multiLevel = multiLevelName ? out[multiLevelName] : undefined;
    const multiLevelDim = multiLevel?.dims[2] ?? 0;
    if (multiLevel && tokenPacker) {
      const p = tokenPacker.info;
      if (dim !== p.inputDim || multiLevel.dims[1] !== tokens || multiLevelDim !== p.multiLevelDim || rows !== p.gridSize || cols !== p.gridSize) {
        throw new LeanVisionError(
          "MMPROJ_MISMATCH",
          `${p.path}: TokenPacker reads ${p.inputDim}-wide features on a ${p.gridSize}x${p.gridSize} grid (multi-level ${p.multiLevelDim}), ` +
            `but this image gives ${dim}-wide features on ${rows}x${cols} (multi-level [${multiLevel.dims}]); use the projector trained on this vision tower`
        );
      }
    }
    t0 = performance.now();
    // Views, not copies.
    const images: ReducedImageRecord[] = [];
    for (let b = 0; b < batch; b++) {
      const tile: VisionFeatures = {
        hidden: (hidden.data as Float32Array).subarray(b * tokens * dim, (b + 1) * tokens * dim),
        numTokens: tokens,
        dim,
        grid: { rows, cols },
        clsIndex
      };
      if (score) tile.attentionScores = (score.data as Float32Array).subarray(b * tokens, (b + 1) * tokens);
      if (keys) Object.assign(tile, { keys: (keys.data as Float32Array).subarray(b * tokens * keyDim, (b + 1) * tokens * keyDim), keyDim });
      if (multiLevel) {
        const m = multiLevelDim;
        Object.assign(tile, { multiLevel: (multiLevel.data as Float32Array).subarray(b * tokens * m, (b + 1) * tokens * m), multiLevelDim: m });
      }
      const image: ImageFeatures = { tiles: [tile], tileGrid: { rows: 0, cols: 0 }, width, height };
      images.push({ width, height, features: image, reduced: reduceImage(image, specObject) });
    }
    const prepared = { spec, tokenPacker: !!needs.multiLevel, images, encodeMs, reduceMs: performance.now() - t0 };
    if (!this.prepared.has(key)) this.prepared.set(key, new Map());
    this.prepared.get(key)!.set(spec, prepared);
    return prepared;
  }

  /** Replacement for model.encode_image: [1, kept tokens of every image, hidden] projected features. */
  async encodeImage(pixelValues: Tensor, reducer?: ReducerInput): Promise<Tensor> {
    const prepared = await this.prepareImages(pixelValues, reducer);
    const dim = prepared.images[0].reduced.dim;
    const total = prepared.images.reduce((n, im) => n + im.reduced.numTokens, 0);
    const kept = new Float32Array(total * dim);
    let offset = 0;
    for (const im of prepared.images) {
      kept.set(im.reduced.hidden, offset);
      offset += im.reduced.hidden.length;
    }
    const t0 = performance.now();
    let projected: OrtTensor;
    const tokenPacker = this.installation.tokenPacker;
    if (prepared.tokenPacker && tokenPacker) {
      // The reducer's rows (point query + the region's multi-level states) through TokenPacker: [rows, LM width].
      const { session, info } = tokenPacker;
      const out = await session.run({ [info.input]: new Tensor("float32", kept, [total, dim]).ort_tensor });
      const rows = out[info.output];
      projected = { data: rows.data, dims: [1, ...rows.dims] };
    } else {
      const { projector } = this.installation;
      const out = await projector.run({ [this.split.names.projectorInput]: new Tensor("float32", kept, [1, total, dim]).ort_tensor });
      projected = out[projector.outputNames[0]];
    }
    const projectMs = performance.now() - t0;
    const timings = { encodeMs: prepared.encodeMs, reduceMs: prepared.reduceMs, projectMs };
    const call = this.currentCall();
    if (call) {
      call.images.push(...prepared.images);
      call.timings.encodeMs += timings.encodeMs;
      call.timings.reduceMs += timings.reduceMs;
      call.timings.projectMs += timings.projectMs;
    }
    this.lastImages = prepared.images;
    this.lastTimings = timings;
    return new Tensor("float32", projected.data as Float32Array, [...projected.dims]);
  }

  clearDecoderCalls(): void {
    this.decoderCalls = [];
  }

  /**
   * Detaches this wrapper. When it was the model's last one, the model and processor are put back
   * exactly as they were and the split sessions are released.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const inst = this.installation;
    inst.members.delete(this);
    if (inst.active === this) inst.active = [...inst.members].pop() ?? null;
    if (inst.members.size) return;
    installations.delete(inst.model);
    for (const undo of inst.restore.reverse()) undo();
    await Promise.all([inst.features.release?.(), inst.projector.release?.(), inst.tokenPacker?.session.release?.()]);
  }

  assertLive(): void {
    if (this.disposed) throw new LeanVisionError("DISPOSED", "this LeanVision model was disposed; wrap the model again with withLeanVision()");
  }
}

/** Hooks the processor, encode_image and the decoder session once per model; undone when the last wrapper is disposed. */
function install(inst: Installation): void {
  const { model, processor, tokenizer, imageToken } = inst;
  // The wrapper of the call in progress (withReducer), else the newest live one.
  const active = () => {
    const call = calls.getStore();
    if (call && call.lean.installation === inst && !call.lean.isDisposed) return call.lean;
    if (!inst.active) throw new LeanVisionError("DISPOSED", "every LeanVision wrapper of this model was disposed");
    return inst.active;
  };

  const originalCall = Object.getOwnPropertyDescriptor(processor, "_call");
  processor._call = async (images, text = null, kwargs = {}) => {
    const imageInputs = await processor.image_processor(images, kwargs);
    if (!text) return { ...imageInputs };
    const prepared = await active().prepareImages(imageInputs.pixel_values);
    const texts = expandImageTokens(Array.isArray(text) ? text : [text], imageToken, prepared.images.map((im) => im.reduced.numTokens));
    return { ...imageInputs, ...tokenizer(texts, kwargs) };
  };
  inst.restore.push(() => restoreProperty(processor, "_call", originalCall));

  const originalEncode = Object.getOwnPropertyDescriptor(model, "encode_image");
  model.encode_image = async ({ pixel_values }) => active().encodeImage(pixel_values);
  inst.restore.push(() => restoreProperty(model, "encode_image", originalEncode));

  const decoder = model.sessions.decoder_model_merged;
  const originalRun = Object.getOwnPropertyDescriptor(decoder, "run");
  const run = decoder.run.bind(decoder);
  decoder.run = async (feeds, ...rest) => {
    const t0 = performance.now();
    const out = await run(feeds, ...rest);
    const embeds = feeds.inputs_embeds as OrtTensor | undefined;
    const past = Object.entries(feeds).find(([k]) => k.startsWith("past_key_values."))?.[1] as OrtTensor | undefined;
    const entry = { ms: performance.now() - t0, tokens: embeds?.dims[1] ?? 0, past: past?.dims[2] ?? 0 };
    const call = calls.getStore();
    if (call && call.lean.installation === inst) call.record.decoderCalls.push(entry);
    else inst.active?.decoderCalls.push(entry);
    return out;
  };
  inst.restore.push(() => restoreProperty(decoder, "run", originalRun));
}

/**
 * Wraps a transformers.js LLaVA model and processor with a reducer. Splits the vision encoder once
 * (cached), then `processor(images, text)` and `model.generate(...)` work as before, with fewer image tokens.
 */
export async function withLeanVision(options: WithLeanVisionOptions): Promise<LeanVisionLlava> {
  const model = options?.model as LlavaLikeModel | undefined;
  const processor = options?.processor as LlavaLikeProcessor | undefined;
  if (!model?.sessions || typeof model.generate !== "function") {
    throw new LeanVisionError("INVALID_INPUT", "withLeanVision needs { model } from LlavaForConditionalGeneration.from_pretrained(...)");
  }
  if (typeof processor?.image_processor !== "function") {
    throw new LeanVisionError("INVALID_INPUT", "withLeanVision needs { processor } from AutoProcessor.from_pretrained(...) for the same folder");
  }
  const tokenizer = (processor.tokenizer ?? options.tokenizer) as LlavaLikeTokenizer | undefined;
  if (typeof tokenizer !== "function") {
    throw new LeanVisionError(
      "INVALID_INPUT",
      "this processor has no tokenizer (transformers.js 4.3 gives LLaVA-OneVision and nanoLLaVA only an image processor): pass { tokenizer } from AutoTokenizer.from_pretrained(...) for the same folder"
    );
  }
  const spec = toReducerSpec(options.reducer ?? "none");
  const threads = options.visionThreads;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new LeanVisionError("INVALID_INPUT", `visionThreads must be a positive integer (got ${threads})`);
  const vision = model.sessions.vision_encoder;
  const decoder = model.sessions.decoder_model_merged;
  if (!vision || !decoder || !model.sessions.embed_tokens) {
    throw new LeanVisionError(
      "UNSUPPORTED_MODEL",
      `expected vision_encoder, embed_tokens and decoder_model_merged sessions; found ${Object.keys(model.sessions).join(", ") || "none"}`
    );
  }
  const existing = installations.get(model);
  if (existing) {
    // Another reducer over the same loaded model: share the split sessions and hooks.
    if (existing.processor !== processor) {
      throw new LeanVisionError("INVALID_INPUT", "this model is already wrapped with another processor; pass the same processor to every withLeanVision call");
    }
    const current = existing.tokenPacker?.info.path;
    if (options.projectorPath !== undefined && (!current || path.resolve(options.projectorPath) !== path.resolve(current))) {
      throw new LeanVisionError(
        "INVALID_INPUT",
        `this model is already wrapped ${current ? `with the projector file ${current}` : "without a projector file"}; ` +
          `the projector is set when a model is first wrapped (dispose every wrapper, or load the model again, to change it)`
      );
    }
    checkSupported(spec, existing.split.missing, existing.tokenPacker?.info ?? null);
    checkProjector(spec, existing.tokenPacker?.info ?? null);
    return join(existing, spec);
  }
  const projectorInfo = options.projectorPath === undefined ? null : inspectOnnxProjectorFile(options.projectorPath);
  if (projectorInfo) checkProjectorAgainstConfig(projectorInfo, model.config);
  const encoderPath = visionEncoderPath(options.modelPath, (vision as { config?: { dtype?: string } }).config?.dtype ?? "fp32");
  const split = loadSplit(encoderPath, options.cacheDir, projectorInfo);
  checkSupported(spec, split.missing, projectorInfo);
  checkProjector(spec, projectorInfo);
  const Session = (vision as unknown as { constructor: OrtSessionClass }).constructor;
  if (typeof Session?.create !== "function") {
    throw new LeanVisionError("UNSUPPORTED_MODEL", "the vision_encoder session is not an onnxruntime InferenceSession");
  }
  const sessionOptions = threads === undefined ? {} : { intraOpNumThreads: threads };
  const [features, projector, tokenPackerSession] = await Promise.all([
    Session.create(split.featuresPath, sessionOptions),
    Session.create(split.projectorPath, sessionOptions),
    projectorInfo ? Session.create(projectorInfo.path, sessionOptions) : null
  ]);
  const inst: Installation = {
    model,
    processor,
    tokenizer,
    imageToken: imageTokenOf(model, processor, tokenizer),
    modelDir: path.basename(path.dirname(encoderPath)) === "onnx" ? path.dirname(path.dirname(encoderPath)) : path.dirname(encoderPath),
    features,
    projector,
    tokenPacker: projectorInfo && tokenPackerSession ? { info: projectorInfo, session: tokenPackerSession } : null,
    split: { names: split.names, found: split.found, missing: split.missing },
    members: new Set(),
    active: null,
    restore: []
  };
  install(inst);
  installations.set(model, inst);
  warmUpReducers(inst, spec);
  return join(inst, spec);
}

/**
 * Runs the reducers once on a synthetic tile of this model's shape, so that the first image does not
 * pay for compiling them (V8's JIT, the SIMD kernels' WebAssembly): 50-200 ms on a first call at
 * SigLIP-so400m size otherwise. Best effort: a model whose config does not give the shape is skipped.
 */
function warmUpReducers(inst: Installation, spec: ReducerSpec): void {
  const shape = configTileShape(inst.model.config.vision_config, inst.split.found.cls);
  const v = inst.model.config.vision_config as { hidden_size?: number; num_attention_heads?: number } | undefined;
  const { hidden_size: dim, num_attention_heads: heads } = v ?? {};
  if (!shape || ![dim, heads].every((x) => Number.isInteger(x) && x! > 0) || dim! % heads! !== 0) return;
  const tokens = shape.numTokens;
  const size = inst.model.config.vision_config!.image_size!;
  const keyDim = dim! / heads!;
  const wave = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) + 1.5);
  const tile: VisionFeatures = {
    ...shape,
    hidden: wave(tokens * dim!, 0.37),
    dim: dim!,
    attentionScores: wave(tokens, 0.71),
    keys: wave(tokens * keyDim, 0.13),
    keyDim
  };
  const tp = inst.tokenPacker?.info;
  if (tp) Object.assign(tile, { multiLevel: wave(tokens * tp.multiLevelDim, 0.29), multiLevelDim: tp.multiLevelDim });
  const warmSpecs = [spec, { kind: "none" }, { kind: "visionzip", dominant: 54, contextual: 10 }, ...(tp ? [{ kind: "tokenpacker", scale: tp.scaleFactor }] : [])];
  for (const warm of warmSpecs as ReducerSpec[]) {
    try {
      if (unmetNeeds(warm, inst.split.missing).length === 0) reduceImage({ tiles: [tile], tileGrid: { rows: 0, cols: 0 }, width: size, height: size }, warm);
    } catch {
      // A budget that does not fit this shape: nothing to warm.
    }
  }
}

/**
 * One image's tile at the vision encoder's own size (vision_config.image_size / patch_size), CLS
 * first where the model has one; null when the config does not give the size.
 */
function configTileShape(visionConfig: { image_size?: number; patch_size?: number } | undefined, cls: boolean): TileShape | null {
  const { image_size: size, patch_size: patch } = visionConfig ?? {};
  if (![size, patch].every((x) => Number.isInteger(x) && x! > 0)) return null;
  const side = Math.floor(size! / patch!);
  return { numTokens: side * side + (cls ? 1 : 0), grid: { rows: side, cols: side }, clsIndex: cls ? 0 : null };
}

/** The image token's text: the processor config's, else the tokenizer's text for config.image_token_index. */
function imageTokenOf(model: LlavaLikeModel, processor: LlavaLikeProcessor, tokenizer: LlavaLikeTokenizer): string {
  if (typeof processor.config?.image_token === "string" && processor.config.image_token) return processor.config.image_token;
  const id = model.config.image_token_index ?? model.config.image_token_id;
  if (typeof id === "number") {
    const text = tokenizer.decode?.([id], { skip_special_tokens: false });
    if (typeof text === "string" && text) return text;
  }
  return "<image>";
}

/**
 * UNSUPPORTED_MODEL when the split vision encoder cannot give a tensor the reducer needs (core's
 * registry says what each reducer needs), naming it and the reducers that work with this model.
 */
function checkSupported(spec: ReducerSpec, missing: readonly MissingTensor[], projector: OnnxProjectorFileInfo | null): void {
  const lacking = unmetNeeds(spec, missing);
  if (!lacking.length) return;
  const tensors = lacking.map((m) => m.tensor);
  // Each registered reducer at its least demanding (no parameters: e.g. VisionZip without contextual tokens);
  // multi-level reducers (TokenPacker) only with a TokenPacker projector file.
  const usable = registeredReducers()
    .filter((d) => {
      try {
        const least = { kind: d.kind } as ReducerSpec;
        return unmetNeeds(least, missing).length === 0 && (projector !== null || !reducerNeeds(least).multiLevel);
      } catch {
        return false;
      }
    })
    .map((d) => d.kind);
  const sameKind = usable.includes(spec.kind) ? ` (${spec.kind} only with parameters that need no ${tensors.join(" or ")})` : "";
  throw new LeanVisionError(
    "UNSUPPORTED_MODEL",
    `${formatReducerSpec(spec)} needs the feature layer's ${tensors.join(" and ")}, which this vision encoder cannot give: ` +
      `${lacking.map((m) => `${m.reason} (${m.consequence})`).join("; ")}. ` +
      `Reducers that work with this model: ${usable.join(", ") || "none"}${sameKind}.`
  );
}

/** The tensors a spec needs that the split could not expose. */
function unmetNeeds(spec: ReducerSpec, missing: readonly MissingTensor[]): MissingTensor[] {
  const needs = reducerNeeds(spec);
  return missing.filter((m) => (m.tensor === "attention" ? needs.attention : needs.keys));
}

/**
 * INVALID_SPEC when the reducer needs multi-level states (TokenPacker) but the model was wrapped without a
 * TokenPacker projector file, or packs regions of another size than the file was trained on.
 */
function checkProjector(spec: ReducerSpec, p: OnnxProjectorFileInfo | null): void {
  if (!reducerNeeds(spec).multiLevel) return;
  if (!p) {
    throw new LeanVisionError(
      "INVALID_SPEC",
      `the ${formatReducerSpec(spec)} reducer needs a TokenPacker projector (the trained projector and the encoder layers it reads); ` +
        `wrap the model with withLeanVision({ ..., projectorPath }) (or openVisionRuntime({ ..., projectorPath })) and a projector file from ` +
        `packages/llama-adapter/scripts/convert-tokenpacker.py CHECKPOINT --onnx tokenpacker.onnx`
    );
  }
  if (spec.kind === "tokenpacker" && spec.scale !== p.scaleFactor) {
    throw new LeanVisionError(
      "INVALID_SPEC",
      `${formatReducerSpec(spec)} packs ${spec.scale}x${spec.scale} regions but the TokenPacker projector ${p.path} was trained on ` +
        `${p.scaleFactor}x${p.scaleFactor} (tokenpacker:${p.scaleFactor}); use that, or the checkpoint trained for ${spec.scale}x${spec.scale}`
    );
  }
}

/** A projector file must fit the vision tower it reads (width, patch grid) and the language model it writes for (width). */
function checkProjectorAgainstConfig(p: OnnxProjectorFileInfo, config: LlavaLikeModel["config"]): void {
  const mismatch = (why: string): never => {
    throw new LeanVisionError("MMPROJ_MISMATCH", `${p.path}: ${why}`);
  };
  const vision = config.vision_config as { hidden_size?: number; image_size?: number; patch_size?: number } | undefined;
  const text = config.text_config as { hidden_size?: number } | undefined;
  const lmWidth = text?.hidden_size ?? (config.hidden_size as number | undefined);
  if (vision?.hidden_size !== undefined && vision.hidden_size !== p.inputDim) {
    mismatch(`the projector reads ${p.inputDim}-wide encoder features but this model's vision tower gives ${vision.hidden_size}; use the projector trained on this vision tower`);
  }
  if (lmWidth !== undefined && lmWidth !== p.outputDim) {
    mismatch(`the projector writes ${p.outputDim}-wide embeddings but the language model's are ${lmWidth}; use the projector trained with this language model`);
  }
  if (vision?.image_size && vision.patch_size) {
    const grid = Math.floor(vision.image_size / vision.patch_size);
    if (grid !== p.gridSize) mismatch(`TokenPacker was trained on a ${p.gridSize}x${p.gridSize} patch grid but this model's vision tower gives ${grid}x${grid}`);
  }
}

function join(inst: Installation, spec: ReducerSpec): LeanVisionLlava {
  const lean = new LeanVisionLlava(inst, spec);
  inst.members.add(lean);
  inst.active = lean;
  return lean;
}

/** File suffixes transformers.js uses per dtype (utils/dtypes.js). */
const DTYPE_SUFFIX: Record<string, string> = {
  fp32: "", int8: "_int8", uint8: "_uint8", q8: "_quantized", q4: "_q4", q2: "_q2", q1: "_q1", bnb4: "_bnb4",
  fp16: "_fp16", q4f16: "_q4f16", q2f16: "_q2f16", q1f16: "_q1f16"
};

/** The vision_encoder file the loaded session came from: same folder, same dtype. */
function visionEncoderPath(modelPath: string | undefined, dtype: string): string {
  if (typeof modelPath !== "string" || !modelPath) {
    throw new LeanVisionError(
      "INVALID_INPUT",
      "withLeanVision needs modelPath: the folder or repo id you passed to from_pretrained (transformers.js does not keep it)"
    );
  }
  const file = `vision_encoder${DTYPE_SUFFIX[dtype] ?? ""}.onnx`;
  // A folder; or a repo id ("Xenova/nanoLLaVA"), found where transformers.js keeps it: env.localModelPath, or
  // env.cacheDir for files it downloaded (the main revision's layout).
  const folders = [modelPath];
  if (/^[\w.-]+\/[\w.-]+$/.test(modelPath)) {
    for (const root of [env.localModelPath, env.cacheDir]) if (typeof root === "string" && root) folders.push(path.join(root, modelPath));
  }
  const candidates = modelPath.endsWith(".onnx") ? [modelPath] : folders.flatMap((folder) => [path.join(folder, "onnx", file), path.join(folder, file)]);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new LeanVisionError("INVALID_INPUT", `no ${file} at ${candidates.join(" or ")}; pass the folder or repo id you gave from_pretrained`);
  return found;
}

/** What withLeanVision keeps of the split: output names, what was found and what is missing. */
export type SplitInfo = Pick<VisionSplit, "names" | "found" | "missing">;

interface CachedSplit extends SplitInfo {
  featuresPath: string;
  projectorPath: string;
}

/**
 * Splits the encoder once per file version (and set of multi-level layers); later loads read the cached graphs.
 * With a TokenPacker projector file, the features graph also gives the hidden states it names, and the
 * encoder must run exactly up to its feature layer (MMPROJ_MISMATCH otherwise).
 */
function loadSplit(encoderPath: string, cacheDir?: string, projector?: OnnxProjectorFileInfo | null): CachedSplit {
  const levels = projector?.multiLevelLayers ?? [];
  let split: CachedSplit;
  try {
    split = splitOnce(encoderPath, cacheDir, levels);
  } catch (error) {
    // A multi-level layer the encoder does not run: name the projector file.
    if (projector && error instanceof LeanVisionError && error.code === "MMPROJ_MISMATCH") {
      throw new LeanVisionError("MMPROJ_MISMATCH", `${projector.path}: ${error.message}; use the projector trained on this vision tower`, { cause: error });
    }
    throw error;
  }
  if (projector && projector.featureLayer !== split.found.attentionLayers) {
    throw new LeanVisionError(
      "MMPROJ_MISMATCH",
      `${projector.path}: TokenPacker reads its patch features from hidden state ${projector.featureLayer} (and multi-level states ` +
        `${projector.multiLevelLayers.join(", ")}), but ${encoderPath} runs ${split.found.attentionLayers} encoder layers (up to hidden state ` +
        `${split.found.attentionLayers}); use a vision encoder of the same tower exported up to hidden state ${projector.featureLayer} ` +
        `(LLaVA-1.5's vision_encoder.onnx for CLIP ViT-L/14-336: 23)`
    );
  }
  return split;
}

function splitOnce(encoderPath: string, cacheDir: string | undefined, levels: readonly number[]): CachedSplit {
  const stat = statSync(encoderPath);
  const levelKey = levels.length ? `\0levels ${levels.join(",")}` : "";
  const key = createHash("sha256").update(`${path.resolve(encoderPath)}\0${stat.size}\0${stat.mtimeMs}\0v2${levelKey}`).digest("hex").slice(0, 16);
  const dir = path.join(cacheDir ?? process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision"), "transformers-adapter", key);
  const meta = path.join(dir, "split.json");
  const featuresPath = path.join(dir, "vision_features.onnx");
  const projectorPath = path.join(dir, "vision_projector.onnx");
  if (existsSync(meta)) {
    const cached = JSON.parse(readFileSync(meta, "utf8")) as Partial<SplitInfo> & Pick<SplitInfo, "names" | "found">;
    // Caches written before multi-level outputs existed lack their (empty) fields.
    return {
      ...cached,
      missing: cached.missing ?? [],
      names: { ...cached.names, multiLevel: cached.names.multiLevel ?? "" },
      found: { ...cached.found, levels: cached.found.levels ?? [] },
      featuresPath,
      projectorPath
    };
  }
  const files = new Map<string, Buffer>();
  const split = splitVisionEncoder(
    readFileSync(encoderPath),
    (location, offset, length) => {
      const file = path.join(path.dirname(encoderPath), location);
      if (!files.has(file)) files.set(file, readFileSync(file));
      const data = files.get(file)!;
      if (offset + (length ?? 0) > data.length) {
        throw new LeanVisionError("UNSUPPORTED_MODEL", `external data ${file} is ${data.length} bytes, shorter than the model says`);
      }
      return data.subarray(offset, length === undefined ? undefined : offset + length);
    },
    { outputs: "compact", levels }
  );
  mkdirSync(dir, { recursive: true });
  const write = (file: string, data: Uint8Array | string) => {
    writeFileSync(`${file}.tmp-${process.pid}`, data);
    renameSync(`${file}.tmp-${process.pid}`, file);
  };
  write(featuresPath, split.features);
  write(projectorPath, split.projector);
  write(meta, JSON.stringify({ source: encoderPath, names: split.names, found: split.found, missing: split.missing }, null, 2));
  return { names: split.names, found: split.found, missing: split.missing, featuresPath, projectorPath };
}

/** Replaces the i-th `<image>` (across all texts, in order) with counts[i] copies of it. */
export function expandImageTokens(texts: string[], imageToken: string, counts: number[]): string[] {
  let next = 0;
  const out = texts.map((text) =>
    text.split(imageToken).reduce((acc, part, i) => {
      if (i === 0) return part;
      if (next >= counts.length) {
        throw new LeanVisionError("INVALID_INPUT", `the text has more ${imageToken} tokens than the ${counts.length} image(s) given`);
      }
      return acc + imageToken.repeat(counts[next++]) + part;
    }, "")
  );
  if (next !== counts.length) {
    throw new LeanVisionError("INVALID_INPUT", `${counts.length} image(s) given but the text has ${next} ${imageToken} token(s); put one ${imageToken} per image`);
  }
  return out;
}

function restoreProperty(target: object, key: string, descriptor: PropertyDescriptor | undefined): void {
  if (descriptor) Object.defineProperty(target, key, descriptor);
  else delete (target as Record<string, unknown>)[key];
}
