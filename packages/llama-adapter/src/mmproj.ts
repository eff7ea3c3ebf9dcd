// Checks an mmproj completely before llama.cpp sees it, against what its projector type's graph
// reads (the bundled llama.cpp's tools/mtmd: clip.cpp's clip_model_loader::load_hparams and
// load_tensors, and models/llava.cpp for projector "mlp"). llama.cpp trusts these files: a tensor the
// graph reads but the file lacks is a null pointer in the graph (SIGSEGV), a shape or hyperparameter
// it does not expect a GGML_ASSERT (SIGABRT), a key of the wrong type an assert in gguf, a large
// image size a multi-GB allocation; and an optional tensor that is missing, or a hyperparameter that
// disagrees with the weights, runs silently as a different model. So: every key clip reads is
// checked for the exact type it reads, every tensor the llava graph reads for presence, shape and
// type, every tensor in the file for being one the graph reads, the hyperparameters for sane ranges,
// and the memory one image takes. A file that passes is one llama.cpp loads and encodes as the model
// its metadata describes.
//
// Errors (LeanVisionError): INVALID_INPUT for the wrong file (missing, not GGUF, not a vision
// mmproj); INVALID_MODEL for a malformed mmproj, naming the key or tensor and what it should be;
// UNSUPPORTED_MODEL for a well-formed mmproj of a kind LeanVision does not run.
import { LeanVisionError } from "@leanvision/core";
import { GGML_TYPES, ggmlTypeName, GgufValueType as T, readGgufHeader } from "./gguf.js";
import type { GgufEntry, GgufHeader, GgufTensorInfo } from "./gguf.js";

/** What the mmproj declares, checked before llama.cpp loads it. */
export interface VisionContextInfo {
  projectorType: string;
  imageSize: number;
  patchSize: number;
  /** Hidden size of the vision encoder (the projector's input). */
  hiddenDim: number;
  heads: number;
  /** Output size of the projector; must equal the language model's n_embd. */
  projectionDim: number;
  hasCls: boolean;
  gridRows: number;
  gridCols: number;
  /** Encoder layers in the file (clip.vision.block_count). */
  layers: number;
  /** Index of the last encoder layer run, whose attention and keys are captured. */
  featureLayerIndex: number;
  /** LLaVA-1.6 any-resolution candidates (clip.vision.image_grid_pinpoints) as [width, height]; empty for fixed-size models. */
  gridPinpoints: Array<[number, number]>;
  /** The file has LLaVA-1.6's image newline (v.image_newline or model.image_newline); mtmd never inserts it. */
  hasImageNewline: boolean;
}

/** Attention scores of one layer for one image (tokens² × heads × 4 bytes) above this are refused. */
export const MAX_ATTENTION_BYTES = 1 << 30;
/** clip.cpp refuses larger images itself; the position embedding grows with its square. */
const MAX_IMAGE_SIZE = 8192;
/** Tiles (image_size squares) one LLaVA-1.6 resolution candidate may take. */
const MAX_TILES = 64;
const MIN_HEAD_DIM = 16;
const MAX_EPS = 1e-2;

/** Every metadata key clip.cpp reads for a vision mmproj, with the type its gguf getter asserts. */
const CLIP_KEYS: ReadonlyArray<{ key: string; type: T; itemType?: T; required?: true }> = [
  { key: "general.name", type: T.STRING },
  { key: "general.description", type: T.STRING },
  { key: "clip.has_vision_encoder", type: T.BOOL },
  { key: "clip.has_audio_encoder", type: T.BOOL },
  { key: "clip.has_gen_audio_encoder", type: T.BOOL },
  { key: "clip.projector_type", type: T.STRING },
  { key: "clip.vision.projector_type", type: T.STRING },
  { key: "clip.vision.embedding_length", type: T.UINT32, required: true },
  { key: "clip.vision.attention.head_count", type: T.UINT32, required: true },
  { key: "clip.vision.attention.head_dim", type: T.UINT32 },
  { key: "clip.vision.attention.head_count_kv", type: T.UINT32 },
  { key: "clip.vision.feed_forward_length", type: T.UINT32, required: true },
  { key: "clip.vision.block_count", type: T.UINT32, required: true },
  { key: "clip.vision.projection_dim", type: T.UINT32, required: true },
  { key: "clip.vision.attention.layer_norm_epsilon", type: T.FLOAT32, required: true },
  { key: "clip.vision.image_size", type: T.UINT32, required: true },
  { key: "clip.vision.patch_size", type: T.UINT32, required: true },
  { key: "clip.minicpmv_version", type: T.INT32 },
  { key: "clip.minicpmv_query_num", type: T.UINT32 },
  { key: "clip.vision.image_grid_pinpoints", type: T.ARRAY, itemType: T.INT32 },
  { key: "clip.use_gelu", type: T.BOOL },
  { key: "clip.use_silu", type: T.BOOL },
  { key: "clip.vision.mm_patch_merge_type", type: T.STRING },
  { key: "clip.vision.image_mean", type: T.ARRAY, itemType: T.FLOAT32, required: true },
  { key: "clip.vision.image_std", type: T.ARRAY, itemType: T.FLOAT32, required: true },
  { key: "clip.vision.feature_layer", type: T.ARRAY, itemType: T.INT32 },
];

/**
 * Reads the GGUF header of `path` and checks it is an mmproj LeanVision can run (LLaVA's `mlp`
 * projector on a CLIP or SigLIP tower, LLaVA-1.6 any-resolution metadata included). Synchronous:
 * it reads only the header. Throws LeanVisionError (see the top of this file).
 */
export function inspectMmproj(path: string): VisionContextInfo {
  return new MmprojCheck(readGgufHeader(path)).run();
}

type TensorKind = "vector" | "matrix" | "kernel";
/** A tensor the llava graph reads: its shape in ggml order, with the formula behind it for messages. */
interface TensorSpec {
  shape: number[];
  formula: string;
  kind: TensorKind;
}

/** Types the graph's ops take: biases and norms are added/multiplied as f32, the patch kernel goes through im2col. */
const KIND_TYPES: Record<TensorKind, ReadonlySet<number>> = {
  vector: new Set([0]),
  kernel: new Set([0, 1]),
  matrix: new Set(Object.keys(GGML_TYPES).map(Number)),
};

class MmprojCheck {
  private readonly path: string;
  private readonly meta: Map<string, GgufEntry>;
  private readonly tensors: Map<string, GgufTensorInfo>;

  constructor(header: GgufHeader) {
    this.path = header.path;
    this.meta = header.metadata;
    this.tensors = header.tensors;
  }

  run(): VisionContextInfo {
    this.checkKind();
    for (const spec of CLIP_KEYS) this.checkKeyType(spec.key, spec.type, spec.itemType, spec.required === true);
    const h = this.hyperparameters();
    const projector = this.checkTensors(h);
    return {
      projectorType: "mlp",
      imageSize: h.imageSize,
      patchSize: h.patchSize,
      hiddenDim: h.nEmbd,
      heads: h.nHead,
      projectionDim: projector.outputDim,
      hasCls: projector.hasCls,
      gridRows: h.gridSide,
      gridCols: h.gridSide,
      layers: h.nLayer,
      featureLayerIndex: h.featureLayerIndex,
      gridPinpoints: h.pinpoints,
      hasImageNewline: this.tensors.has("v.image_newline") || this.tensors.has("model.image_newline"),
    };
  }

  private invalid(message: string): never {
    throw new LeanVisionError("INVALID_MODEL", `${this.path}: ${message}`);
  }

  private unsupported(message: string): never {
    throw new LeanVisionError("UNSUPPORTED_MODEL", `${this.path}: ${message}`);
  }

  /** The wrong file, or an mmproj for something other than LLaVA's mlp vision projector. */
  private checkKind(): void {
    const arch = this.meta.get("general.architecture");
    if (arch?.type !== T.STRING || arch.value !== "clip") {
      throw new LeanVisionError("INVALID_INPUT", `${this.path} is not a vision mmproj (general.architecture is not "clip"); ` +
        `pass the model's mmproj-*.gguf, not the language model`);
    }
    for (const key of ["clip.has_vision_encoder", "clip.has_audio_encoder", "clip.has_gen_audio_encoder"]) this.checkKeyType(key, T.BOOL, undefined, false);
    const vision = this.meta.get("clip.has_vision_encoder");
    if (vision === undefined) this.invalid(`lacks the key clip.has_vision_encoder (true for a vision mmproj)`);
    if (vision.value !== true) this.unsupported(`has no vision encoder (clip.has_vision_encoder is false); LeanVision runs vision mmprojs`);
    for (const key of ["clip.has_audio_encoder", "clip.has_gen_audio_encoder"]) {
      if (this.meta.get(key)?.value === true) this.unsupported(`${key} is true; LeanVision runs vision-only LLaVA mmprojs`);
    }
    // clip.cpp reads clip.projector_type first and falls back to clip.vision.projector_type.
    this.checkKeyType("clip.projector_type", T.STRING, undefined, false);
    this.checkKeyType("clip.vision.projector_type", T.STRING, undefined, false);
    const type = (this.meta.get("clip.projector_type")?.value || this.meta.get("clip.vision.projector_type")?.value || "") as string;
    if (type === "") this.invalid(`names no projector type (clip.projector_type); LLaVA's is "mlp"`);
    if (type !== "mlp") this.unsupported(`projector type '${type}' is not supported; LeanVision supports LLaVA's 'mlp' projector`);
    if (this.tensors.has("mm.3.weight")) {
      this.unsupported(`projector type 'mlp' with mm.3.weight (Yi-style mlp_norm) is not supported; LeanVision supports LLaVA's 'mlp' projector`);
    }
  }

  private checkKeyType(key: string, type: T, itemType: T | undefined, required: boolean): void {
    const entry = this.meta.get(key);
    if (entry === undefined) {
      if (required) this.invalid(`lacks the key ${key}`);
      return;
    }
    const expected = type === T.ARRAY ? `an array of ${T[itemType!]}` : T[type];
    const actual = entry.type === T.ARRAY ? `an array of ${T[entry.itemType]}` : T[entry.type];
    if (actual !== expected) this.invalid(`key ${key} is ${actual}, but llama.cpp reads it as ${expected}`);
  }

  private num(key: string): number | undefined {
    return this.meta.get(key)?.value as number | undefined;
  }

  private numbers(key: string): number[] | undefined {
    return this.meta.get(key)?.value as number[] | undefined;
  }

  /** A u32 key's value within [min, max]. */
  private inRange(key: string, min: number, max: number, why = ""): number {
    const v = this.num(key)!;
    if (!(v >= min && v <= max)) this.invalid(`${key} is ${v}; it must be in [${min}, ${max}]${why}`);
    return v;
  }

  private hyperparameters() {
    const nEmbd = this.inRange("clip.vision.embedding_length", 1, 16384);
    const nHead = this.inRange("clip.vision.attention.head_count", 2, Math.max(2, Math.floor(nEmbd / MIN_HEAD_DIM)),
      ` (a LLaVA vision tower has several heads of at least ${MIN_HEAD_DIM} dimensions each; embedding_length is ${nEmbd})`);
    if (nEmbd % nHead !== 0) this.invalid(`clip.vision.attention.head_count ${nHead} does not divide embedding_length ${nEmbd}`);
    const headDim = this.num("clip.vision.attention.head_dim");
    if (headDim !== undefined && headDim !== 0 && headDim * nHead !== nEmbd) {
      this.invalid(`clip.vision.attention.head_dim is ${headDim}; it must be embedding_length / head_count = ${nEmbd / nHead}`);
    }
    const nFf = this.inRange("clip.vision.feed_forward_length", 1, 1 << 18);
    const nLayer = this.inRange("clip.vision.block_count", 1, 256);
    this.inRange("clip.vision.projection_dim", 0, 1 << 20);
    const eps = this.num("clip.vision.attention.layer_norm_epsilon")!;
    if (!(eps > 0 && eps <= MAX_EPS)) this.invalid(`clip.vision.attention.layer_norm_epsilon is ${eps}; it must be a positive number up to ${MAX_EPS} (LLaVA towers use 1e-5 or 1e-6)`);

    const patchSize = this.inRange("clip.vision.patch_size", 2, MAX_IMAGE_SIZE);
    const imageSize = this.inRange("clip.vision.image_size", patchSize, MAX_IMAGE_SIZE, ` (at least patch_size ${patchSize})`);
    // The patch convolution drops what is left over (SigLIP-so400m-patch14-384: 384 px, 27x27 patches),
    // so image_size need not be a multiple of patch_size; the position table must match the grid.
    const gridSide = Math.floor(imageSize / patchSize);
    const tokens = gridSide * gridSide + 1;
    const attentionBytes = tokens * tokens * nHead * 4;
    if (attentionBytes > MAX_ATTENTION_BYTES) {
      this.invalid(`clip.vision.image_size ${imageSize} with patch_size ${patchSize} gives ${tokens} tokens per image, whose attention ` +
        `takes ${(attentionBytes / 2 ** 30).toFixed(1)} GiB per layer (limit ${MAX_ATTENTION_BYTES / 2 ** 30} GiB); LLaVA towers take 336-384 px`);
    }

    if (this.meta.get("clip.use_gelu")?.value === true && this.meta.get("clip.use_silu")?.value === true) {
      this.invalid(`clip.use_gelu and clip.use_silu are both true; the tower has one activation`);
    }
    for (const key of ["clip.vision.image_mean", "clip.vision.image_std"]) {
      const values = this.numbers(key)!;
      if (values.length !== 3) this.invalid(`${key} has ${values.length} values; it must have 3 (R, G, B)`);
      const ok = key.endsWith("std") ? (v: number) => Number.isFinite(v) && v > 0 : Number.isFinite;
      if (!values.every(ok)) this.invalid(`${key} is [${values.join(", ")}]; it must hold 3 finite${key.endsWith("std") ? ", positive" : ""} numbers`);
    }
    return { nEmbd, nHead, nFf, nLayer, patchSize, imageSize, gridSide, featureLayerIndex: this.featureLayerIndex(nLayer), pinpoints: this.pinpoints(imageSize) };
  }

  /**
   * The llava graph runs layers [0, L) where L is the one explicit feature layer, or block_count - 1
   * when there is none (LLaVA's penultimate layer); the last layer run is the captured one.
   */
  private featureLayerIndex(nLayer: number): number {
    const key = "clip.vision.feature_layer";
    const layers = this.numbers(key);
    let runs = nLayer - 1;
    if (layers !== undefined) {
      if (layers.length === 0) this.invalid(`${key} lists no layer; omit the key for LLaVA's default (block_count - 1) or list one layer in [1, ${nLayer}]`);
      if (layers.some((l) => l < 0 || l > nLayer)) this.invalid(`${key} is [${layers.join(", ")}]; its layers must be in [1, block_count ${nLayer}]`);
      if (layers.length > 1) this.unsupported(`${key} lists ${layers.length} layers; stacked multi-layer features (Granite-style) are not supported`);
      runs = layers[0];
    }
    if (runs < 1) this.unsupported(`the feature layer runs no encoder layer (${key} ${layers ? `[${layers.join(", ")}]` : "absent"}, block_count ${nLayer})`);
    return runs - 1;
  }

  /** LLaVA-1.6 resolution candidates: whole tiles of image_size, a bounded number of them. */
  private pinpoints(imageSize: number): Array<[number, number]> {
    const key = "clip.vision.image_grid_pinpoints";
    const values = this.numbers(key);
    if (values === undefined) return [];
    if (values.length === 0 || values.length % 2 !== 0) this.invalid(`${key} has ${values.length} values; it must list [width, height] pairs`);
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < values.length; i += 2) {
      const [w, h] = [values[i], values[i + 1]];
      if (!(w > 0 && h > 0 && w % imageSize === 0 && h % imageSize === 0)) {
        this.invalid(`${key} has the candidate ${w}x${h}; each must be a positive multiple of image_size ${imageSize} in both sides`);
      }
      if ((w / imageSize) * (h / imageSize) > MAX_TILES) this.invalid(`${key} has the candidate ${w}x${h}: ${(w / imageSize) * (h / imageSize)} tiles, more than ${MAX_TILES}`);
      pairs.push([w, h]);
    }
    return pairs;
  }

  /** Every tensor the llava graph reads is there with its shape and a type its op takes, and nothing else is. */
  private checkTensors(h: ReturnType<MmprojCheck["hyperparameters"]>): { outputDim: number; hasCls: boolean } {
    const { nEmbd: E, nFf: F, nLayer, patchSize: P, gridSide } = h;
    const has = (name: string) => this.tensors.has(name);
    const expected = new Map<string, TensorSpec>();
    const expect = (name: string, shape: number[], formula: string, kind: TensorKind) => expected.set(name, { shape, formula, kind });
    const vector = (name: string, n: number, formula: string) => expect(name, [n], formula, "vector");

    // Tower family: CLIP has a class embedding and a pre-layernorm, SigLIP neither.
    for (const pair of ["v.pre_ln", "v.post_ln"]) {
      if (has(`${pair}.weight`) !== has(`${pair}.bias`)) this.invalid(`has only one of ${pair}.weight and ${pair}.bias; a layernorm has both`);
    }
    const hasCls = has("v.class_embd");
    if (hasCls !== has("v.pre_ln.weight")) {
      this.invalid(hasCls
        ? `has v.class_embd but lacks v.pre_ln.weight: a CLIP tower (class embedding) has a pre-layernorm`
        : `lacks v.class_embd but has v.pre_ln.weight: a CLIP tower (pre-layernorm) has a class embedding`);
    }
    const nPos = gridSide * gridSide + (hasCls ? 1 : 0);
    expect("v.patch_embd.weight", [P, P, 3, E], "[patch_size, patch_size, 3, embedding_length]", "kernel");
    if (has("v.patch_embd.bias")) vector("v.patch_embd.bias", E, "[embedding_length]");
    expect("v.position_embd.weight", [E, nPos], `[embedding_length, (image_size / patch_size)²${hasCls ? " + 1 for the class embedding" : ""}]`, "matrix");
    if (hasCls) {
      vector("v.class_embd", E, "[embedding_length]");
      vector("v.pre_ln.weight", E, "[embedding_length]");
      vector("v.pre_ln.bias", E, "[embedding_length]");
    }
    if (has("v.post_ln.weight")) {
      vector("v.post_ln.weight", E, "[embedding_length]");
      vector("v.post_ln.bias", E, "[embedding_length]");
    }
    for (let il = 0; il < nLayer; il++) {
      const p = `v.blk.${il}`;
      for (const proj of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
        expect(`${p}.${proj}.weight`, [E, E], "[embedding_length, embedding_length]", "matrix");
        vector(`${p}.${proj}.bias`, E, "[embedding_length]");
      }
      for (const norm of ["ln1", "ln2"]) {
        vector(`${p}.${norm}.weight`, E, "[embedding_length]");
        vector(`${p}.${norm}.bias`, E, "[embedding_length]");
      }
      // clip.cpp swaps up and down for legacy files whose ffn_down has embedding_length rows.
      const swapped = this.tensors.get(`${p}.ffn_down.weight`)?.shape[0] === E;
      const [up, down] = swapped ? ["ffn_down", "ffn_up"] : ["ffn_up", "ffn_down"];
      expect(`${p}.${up}.weight`, [E, F], "[embedding_length, feed_forward_length]", "matrix");
      vector(`${p}.${up}.bias`, F, "[feed_forward_length]");
      expect(`${p}.${down}.weight`, [F, E], "[feed_forward_length, embedding_length]", "matrix");
      vector(`${p}.${down}.bias`, E, "[embedding_length]");
    }

    this.checkExpected(expected);

    // The projector: mm.0 [embedding_length -> hidden], GELU, mm.2 [hidden -> the language model's n_embd].
    const mm0 = this.tensors.get("mm.0.weight");
    const mm2 = this.tensors.get("mm.2.weight");
    if (mm0 === undefined) this.invalid(`lacks the tensor mm.0.weight (the projector's first layer)`);
    if (mm2 === undefined) this.invalid(`lacks the tensor mm.2.weight (the projector's second layer)`);
    if (mm0.shape[0] > E && mm0.shape[0] % E === 0) {
      this.unsupported(`the projector's input (mm.0.weight ${fmt(mm0.shape)}) is a stack of ${mm0.shape[0] / E} feature layers of embedding_length ${E}; multi-layer feature stacks are not supported`);
    }
    const hidden = mm0.shape[1] ?? 1;
    const outputDim = mm2.shape[1] ?? 1;
    expect("mm.0.weight", [E, hidden], "[embedding_length, projector hidden size]", "matrix");
    vector("mm.0.bias", hidden, "[mm.0.weight's output size]");
    expect("mm.2.weight", [hidden, outputDim], "[mm.0.weight's output size, the language model's n_embd]", "matrix");
    vector("mm.2.bias", outputDim, "[mm.2.weight's output size]");
    // LLaVA-1.6's learned newline: "v.image_newline" (clip.cpp loads it for mlp, no graph reads it) or
    // "model.image_newline" (the name llama.cpp's legacy 1.6 conversion writes; clip.cpp ignores it).
    for (const name of ["v.image_newline", "model.image_newline"]) if (has(name)) vector(name, outputDim, "[mm.2.weight's output size]");
    this.checkExpected(expected);
    for (const name of this.tensors.keys()) {
      if (expected.has(name)) continue;
      const layer = /^v\.blk\.(\d+)\./.exec(name);
      if (layer && Number(layer[1]) >= nLayer) this.invalid(`has the tensor ${name} but clip.vision.block_count is ${nLayer}: the block count is wrong`);
      this.unsupported(`has the tensor ${name}, which LLaVA's mlp graph does not read (a different architecture?)`);
    }
    return { outputDim, hasCls };
  }

  private checkExpected(expected: ReadonlyMap<string, TensorSpec>): void {
    for (const [name, spec] of expected) {
      const t = this.tensors.get(name);
      if (t === undefined) this.invalid(`lacks the tensor ${name} ${fmt(spec.shape)}, which llama.cpp's llava graph reads`);
      if (!sameShape(t.shape, spec.shape)) this.invalid(`tensor ${name} is ${fmt(t.shape)} but should be ${fmt(spec.shape)}: ${spec.formula}`);
      if (!KIND_TYPES[spec.kind].has(t.type)) {
        this.invalid(`tensor ${name} is ${ggmlTypeName(t.type)}; llama.cpp's llava graph takes ${[...KIND_TYPES[spec.kind]].map(ggmlTypeName).join(" or ")} for it`);
      }
    }
  }
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** ggml shapes compare with trailing 1s dropped ([n] is [n, 1]). */
function sameShape(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < 4; i++) if ((a[i] ?? 1) !== (b[i] ?? 1)) return false;
  return true;
}
