// withLeanVision: wraps a loaded transformers.js LLaVA model and its processor so images are reduced
// before the language model sees them. The vision encoder graph is split once (see instrument.ts);
// the processor expands `<image>` to the reduced token count; model.encode_image runs the features
// graph, the reducer and the projector on the kept tokens; `generate` is transformers.js's own.
import {
  formatReducerSpec,
  LeanVisionError,
  parseReducerSpec,
  reduce,
  type ReducedTokens,
  type ReducerSpec,
  type VisionFeatures
} from "@leanvision/core";
import { Tensor, type PreTrainedModel, type Processor } from "@huggingface/transformers";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { splitVisionEncoder, type VisionSplit } from "./instrument.js";

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
  config: { image_token_index?: number; image_token_id?: number; vision_config?: { patch_size?: number }; [k: string]: unknown };
  sessions: Record<string, OrtSession>;
  encode_image(inputs: { pixel_values: Tensor }): Promise<Tensor>;
  generate(options: Record<string, unknown>): Promise<unknown>;
}
export interface LlavaLikeProcessor {
  image_processor: (images: unknown, kwargs?: object) => Promise<{ pixel_values: Tensor; [k: string]: unknown }>;
  tokenizer: ((text: string | string[], kwargs?: object) => Record<string, Tensor>) & Record<string, any>;
  config: { image_token?: string; [k: string]: unknown };
  _call(images: unknown, text?: string | string[] | null, kwargs?: object): Promise<Record<string, unknown>>;
}

export interface WithLeanVisionOptions {
  /** From LlavaForConditionalGeneration.from_pretrained(folder). */
  model: PreTrainedModel | LlavaLikeModel;
  /** From AutoProcessor.from_pretrained(folder). */
  processor: Processor | LlavaLikeProcessor;
  reducer?: ReducerSpec | string;
  /**
   * The folder given to from_pretrained (or its onnx/vision_encoder.onnx); transformers.js does not
   * keep it. Needed the first time a model is wrapped; later wrappers of the same model share the split.
   */
  modelPath?: string;
  /** Where the split graphs are cached; defaults to $LEANVISION_CACHE_DIR or ~/.cache/leanvision. */
  cacheDir?: string;
}

/** One image as it went through the reducer. */
export interface EncodedImage {
  width: number;
  height: number;
  features: VisionFeatures;
  reduced: ReducedTokens;
}

export interface ImageEncodeTimings {
  encodeMs: number;
  reduceMs: number;
  projectMs: number;
}

interface Prepared {
  spec: string;
  images: EncodedImage[];
  encodeMs: number;
  reduceMs: number;
}

export interface DecoderCall {
  ms: number;
  /** New positions run through the decoder. */
  tokens: number;
  /** Positions taken from past_key_values. */
  past: number;
}

/**
 * What withLeanVision installs on one model, shared by every wrapper of that model: the split
 * sessions and the hooks. The hooks route to the `active` wrapper (the newest, or the one a chat
 * last prompted through), so several reducers can share one loaded model.
 */
interface Installation {
  model: LlavaLikeModel;
  processor: LlavaLikeProcessor;
  features: OrtSession;
  projector: OrtSession;
  split: Pick<VisionSplit, "names" | "found">;
  members: Set<LeanVisionLlava>;
  active: LeanVisionLlava | null;
  restore: Array<() => void>;
}

const installations = new WeakMap<object, Installation>();

export class LeanVisionLlava {
  /** Images and timings of the most recent encode_image call through this wrapper. */
  lastImages: EncodedImage[] = [];
  lastTimings: ImageEncodeTimings = { encodeMs: 0, reduceMs: 0, projectMs: 0 };
  /** Every decoder run while this wrapper was active, since the last clearDecoderCalls(). */
  decoderCalls: DecoderCall[] = [];

  private spec: ReducerSpec;
  private disposed = false;
  private readonly prepared = new WeakMap<object, Prepared>();

  /** Use withLeanVision(); the constructor is internal. */
  constructor(
    private readonly installation: Installation,
    reducer: ReducerSpec
  ) {
    this.spec = reducer;
  }

  get model(): LlavaLikeModel {
    return this.installation.model;
  }
  get processor(): LlavaLikeProcessor {
    return this.installation.processor;
  }
  /** What the graph split found in vision_encoder.onnx. */
  get split(): Pick<VisionSplit, "names" | "found"> {
    return this.installation.split;
  }

  /** Routes the model's hooks (processor, encode_image, decoder timings) to this wrapper's reducer. */
  activate(): void {
    this.assertLive();
    this.installation.active = this;
  }

  get reducer(): ReducerSpec {
    return this.spec;
  }
  set reducer(spec: ReducerSpec | string) {
    this.spec = toSpec(spec);
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Runs the features graph and the reducer; the token counts decide how `<image>` expands. */
  async prepareImages(pixelValues: Tensor): Promise<Prepared> {
    this.assertLive();
    const spec = formatReducerSpec(this.spec);
    const cached = this.prepared.get(pixelValues.data as object);
    if (cached && cached.spec === spec) return cached;

    const [batch, , height, width] = pixelValues.dims;
    const patch = this.model.config.vision_config?.patch_size ?? 14;
    const rows = Math.floor(height / patch);
    const cols = Math.floor(width / patch);
    let t0 = performance.now();
    const { features } = this.installation;
    const out = await features.run({ [features.inputNames[0]]: pixelValues.ort_tensor });
    const encodeMs = performance.now() - t0;
    const hidden = out[this.split.names.hidden];
    const attention = out[this.split.names.attention];
    const keys = out[this.split.names.keys];
    const [, tokens, dim] = hidden.dims;
    const heads = attention.dims[1];
    const keyDim = keys.dims[2] / heads;
    if (tokens !== rows * cols + 1 || attention.dims[2] !== tokens || keys.dims[1] !== tokens || !Number.isInteger(keyDim)) {
      throw new LeanVisionError(
        "UNSUPPORTED_MODEL",
        `the feature layer has ${tokens} tokens (attention [${attention.dims}], keys [${keys.dims}]) but a ` +
          `${height}x${width} image with patch ${patch} has ${rows}x${cols} patches + CLS`
      );
    }
    t0 = performance.now();
    // Views, not copies: the attention alone is heads x tokens x tokens floats (21 MB at CLIP-L size).
    const images: EncodedImage[] = [];
    for (let b = 0; b < batch; b++) {
      const features: VisionFeatures = {
        hidden: (hidden.data as Float32Array).subarray(b * tokens * dim, (b + 1) * tokens * dim),
        numTokens: tokens,
        dim,
        grid: { rows, cols },
        clsIndex: 0,
        attention: (attention.data as Float32Array).subarray(b * heads * tokens * tokens, (b + 1) * heads * tokens * tokens),
        heads,
        keys: averageHeads(keys.data as Float32Array, b, tokens, heads, keyDim),
        keyDim
      };
      images.push({ width, height, features, reduced: reduce(features, this.spec) });
    }
    const prepared = { spec, images, encodeMs, reduceMs: performance.now() - t0 };
    this.prepared.set(pixelValues.data as object, prepared);
    return prepared;
  }

  /** Replacement for model.encode_image: [1, kept tokens of every image, hidden] projected features. */
  async encodeImage(pixelValues: Tensor): Promise<Tensor> {
    const prepared = await this.prepareImages(pixelValues);
    const dim = prepared.images[0].reduced.dim;
    const total = prepared.images.reduce((n, im) => n + im.reduced.numTokens, 0);
    const kept = new Float32Array(total * dim);
    let offset = 0;
    for (const im of prepared.images) {
      kept.set(im.reduced.hidden, offset);
      offset += im.reduced.hidden.length;
    }
    const t0 = performance.now();
    const { projector } = this.installation;
    const out = await projector.run({ [this.split.names.projectorInput]: new Tensor("float32", kept, [1, total, dim]).ort_tensor });
    const projectMs = performance.now() - t0;
    const projected = out[projector.outputNames[0]];
    this.lastImages = prepared.images;
    this.lastTimings = { encodeMs: prepared.encodeMs, reduceMs: prepared.reduceMs, projectMs };
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
    await Promise.all([inst.features.release?.(), inst.projector.release?.()]);
  }

  assertLive(): void {
    if (this.disposed) throw new LeanVisionError("DISPOSED", "this LeanVision model was disposed; wrap the model again with withLeanVision()");
  }
}

/** Hooks the processor, encode_image and the decoder session once per model; undone when the last wrapper is disposed. */
function install(inst: Installation): void {
  const { model, processor } = inst;
  const imageToken = processor.config.image_token ?? "<image>";
  const active = () => {
    if (!inst.active) throw new LeanVisionError("DISPOSED", "every LeanVision wrapper of this model was disposed");
    return inst.active;
  };

  const originalCall = Object.getOwnPropertyDescriptor(processor, "_call");
  processor._call = async (images, text = null, kwargs = {}) => {
    const imageInputs = await processor.image_processor(images, kwargs);
    if (!text) return { ...imageInputs };
    const prepared = await active().prepareImages(imageInputs.pixel_values);
    const texts = expandImageTokens(Array.isArray(text) ? text : [text], imageToken, prepared.images.map((im) => im.reduced.numTokens));
    return { ...imageInputs, ...processor.tokenizer(texts, kwargs) };
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
    inst.active?.decoderCalls.push({ ms: performance.now() - t0, tokens: embeds?.dims[1] ?? 0, past: past?.dims[2] ?? 0 });
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
  if (typeof processor?.image_processor !== "function" || typeof processor.tokenizer !== "function") {
    throw new LeanVisionError("INVALID_INPUT", "withLeanVision needs { processor } from AutoProcessor.from_pretrained(...) for the same folder");
  }
  const spec = toSpec(options.reducer ?? { kind: "none" });
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
    return join(existing, spec);
  }
  const encoderPath = visionEncoderPath(options.modelPath, (vision as { config?: { dtype?: string } }).config?.dtype ?? "fp32");
  const split = loadSplit(encoderPath, options.cacheDir);
  const Session = (vision as unknown as { constructor: OrtSessionClass }).constructor;
  if (typeof Session?.create !== "function") {
    throw new LeanVisionError("UNSUPPORTED_MODEL", "the vision_encoder session is not an onnxruntime InferenceSession");
  }
  const [features, projector] = await Promise.all([Session.create(split.featuresPath), Session.create(split.projectorPath)]);
  const inst: Installation = { model, processor, features, projector, split, members: new Set(), active: null, restore: [] };
  install(inst);
  installations.set(model, inst);
  return join(inst, spec);
}

function join(inst: Installation, spec: ReducerSpec): LeanVisionLlava {
  const lean = new LeanVisionLlava(inst, spec);
  inst.members.add(lean);
  inst.active = lean;
  return lean;
}

const KINDS: ReadonlyArray<ReducerSpec["kind"]> = ["none", "visionzip", "visionzip-adaptive", "pool", "regionpack"];

function toSpec(spec: ReducerSpec | string): ReducerSpec {
  if (typeof spec === "string") return parseReducerSpec(spec);
  if (!spec || typeof spec !== "object" || !KINDS.includes(spec.kind)) {
    throw new LeanVisionError("INVALID_SPEC", `unknown reducer ${JSON.stringify(spec)}; use one of ${KINDS.join(", ")} (or a string such as "none")`);
  }
  return parseReducerSpec(formatReducerSpec(spec)); // round trip: checks every parameter is a number
}

/** File suffixes transformers.js uses per dtype (utils/dtypes.js). */
const DTYPE_SUFFIX: Record<string, string> = {
  fp32: "", int8: "_int8", uint8: "_uint8", q8: "_quantized", q4: "_q4", q2: "_q2", q1: "_q1", bnb4: "_bnb4",
  fp16: "_fp16", q4f16: "_q4f16", q2f16: "_q2f16", q1f16: "_q1f16"
};

/** The vision_encoder file the loaded session came from: same folder, same dtype. */
function visionEncoderPath(modelPath: string | undefined, dtype: string): string {
  if (typeof modelPath !== "string" || !modelPath) {
    throw new LeanVisionError("INVALID_INPUT", "withLeanVision needs modelPath: the folder you passed to from_pretrained (transformers.js does not keep it)");
  }
  if (dtype.includes("16")) {
    throw new LeanVisionError(
      "UNSUPPORTED_MODEL",
      `the vision encoder was loaded as ${dtype}; LeanVision reads the feature layer in float32, so load it with dtype "fp32" (or a quantized dtype with float32 activations such as "q8")`
    );
  }
  const file = `vision_encoder${DTYPE_SUFFIX[dtype] ?? ""}.onnx`;
  const candidates = modelPath.endsWith(".onnx") ? [modelPath] : [path.join(modelPath, "onnx", file), path.join(modelPath, file)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new LeanVisionError("INVALID_INPUT", `no ${file} at ${candidates.join(" or ")}; pass the folder you gave from_pretrained`);
  return found;
}

interface CachedSplit extends Pick<VisionSplit, "names" | "found"> {
  featuresPath: string;
  projectorPath: string;
}

/** Splits the encoder once per file version; later loads read the cached graphs. */
function loadSplit(encoderPath: string, cacheDir?: string): CachedSplit {
  const stat = statSync(encoderPath);
  const key = createHash("sha256").update(`${path.resolve(encoderPath)}\0${stat.size}\0${stat.mtimeMs}\0v1`).digest("hex").slice(0, 16);
  const dir = path.join(cacheDir ?? process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision"), "transformers-adapter", key);
  const meta = path.join(dir, "split.json");
  const featuresPath = path.join(dir, "vision_features.onnx");
  const projectorPath = path.join(dir, "vision_projector.onnx");
  if (existsSync(meta)) return { ...JSON.parse(readFileSync(meta, "utf8")), featuresPath, projectorPath };
  const files = new Map<string, Buffer>();
  const split = splitVisionEncoder(readFileSync(encoderPath), (location, offset, length) => {
    const file = path.join(path.dirname(encoderPath), location);
    if (!files.has(file)) files.set(file, readFileSync(file));
    const data = files.get(file)!;
    if (offset + (length ?? 0) > data.length) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", `external data ${file} is ${data.length} bytes, shorter than the model says`);
    }
    return data.subarray(offset, length === undefined ? undefined : offset + length);
  });
  mkdirSync(dir, { recursive: true });
  const write = (file: string, data: Uint8Array | string) => {
    writeFileSync(`${file}.tmp-${process.pid}`, data);
    renameSync(`${file}.tmp-${process.pid}`, file);
  };
  write(featuresPath, split.features);
  write(projectorPath, split.projector);
  write(meta, JSON.stringify({ source: encoderPath, names: split.names, found: split.found }, null, 2));
  return { names: split.names, found: split.found, featuresPath, projectorPath };
}

/** Keys [tokens x heads*headDim] of image b -> [tokens x headDim], averaged over heads (VisionZip's metric). */
function averageHeads(keys: Float32Array, b: number, tokens: number, heads: number, headDim: number): Float32Array {
  const out = new Float32Array(tokens * headDim);
  const base = b * tokens * heads * headDim;
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const src = base + (t * heads + h) * headDim;
      for (let d = 0; d < headDim; d++) out[t * headDim + d] += keys[src + d] / heads;
    }
  }
  return out;
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
