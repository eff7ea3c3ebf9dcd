// Builds the GGUF pair of a LLaVA profile: a llama.cpp language model (with the real tokenizer
// copied from the bundled vocab GGUF) and an mmproj in the layout tools/mtmd/clip.cpp reads for
// projector type "mlp" (the legacy llava converter's layout).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { ensureLlamaSource } from "./llama-source.js";
import { GgmlType, hashSeed } from "./numeric.js";
import type { GgufProfile, LanguageModelShape, VisionTowerShape, WeightType } from "./profiles.js";
import { imageTokenGrid } from "./profiles.js";
import { type GgufArray, type GgufFile, type GgufScalar, type GgufTensor, type GgufValue, GgufValueType, kv } from "./writer.js";

/** LLaVA-1.5's conversation format (Vicuna v1), as a Jinja chat template. */
export const VICUNA_CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}" +
  "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}" +
  "{% else %}{{ 'ASSISTANT: ' + message['content'] + '</s>' }}{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

const WEIGHT_TYPES: Record<WeightType, GgmlType> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  q8_0: GgmlType.Q8_0,
  q4_0: GgmlType.Q4_0,
};

// general.file_type values (llama_ftype) for a model whose matrices are all of one type.
const FILE_TYPES: Record<WeightType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };

/** Path of a vocab-only GGUF in node-llama-cpp's bundled llama.cpp source. */
export function vocabPath(vocab: LanguageModelShape["vocab"]): string {
  return path.join(ensureLlamaSource(), "models", `ggml-vocab-${vocab}.gguf`);
}

/** The tokenizer.* metadata of a vocab GGUF, with its exact value types, ready to write again. */
export async function readTokenizerMetadata(file: string): Promise<Array<[string, GgufValue]>> {
  const parsed = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const out: Array<[string, GgufValue]> = [];
  for (const [key, entry] of Object.entries(parsed.typedMetadata)) {
    if (!key.startsWith("tokenizer.")) continue;
    const type = entry.type as number as GgufValueType;
    const subType = (entry as { subType?: number }).subType as GgufValueType | undefined;
    if (type === GgufValueType.ARRAY) {
      if (subType === undefined || subType === GgufValueType.ARRAY) throw new Error(`${file}: unexpected nested array in ${key}`);
      out.push([key, { type, value: { itemType: subType, items: entry.value as GgufArray["items"] } }]);
    } else {
      out.push([key, { type, value: entry.value as GgufScalar }]);
    }
  }
  return out;
}

/** Random weights scaled by 1/sqrt(fan_in) (about N(0, 0.02) at 2-4k wide), so activations stay O(1). */
function matrix(name: string, shape: number[], type: GgmlType, seed: number): GgufTensor {
  return { name, shape, type, source: { kind: "random", std: 1 / Math.sqrt(shape[0]), seed: hashSeed(seed, name) } };
}
function embedding(name: string, shape: number[], type: GgmlType, seed: number): GgufTensor {
  return { name, shape, type, source: { kind: "random", std: 0.02, seed: hashSeed(seed, name) } };
}
function ones(name: string, n: number): GgufTensor {
  return { name, shape: [n], type: GgmlType.F32, source: { kind: "const", value: 1 } };
}
function zeros(name: string, n: number): GgufTensor {
  return { name, shape: [n], type: GgmlType.F32, source: { kind: "const", value: 0 } };
}
function bias(name: string, n: number, seed: number): GgufTensor {
  return { name, shape: [n], type: GgmlType.F32, source: { kind: "random", std: 0.02, seed: hashSeed(seed, name) } };
}

/** The language model: llama.cpp's "llama" or "qwen2" architecture with the given tokenizer metadata. */
export function languageModelFile(profile: GgufProfile, tokenizer: Array<[string, GgufValue]>): GgufFile {
  const lm = profile.lm;
  const tokens = tokenizer.find(([key]) => key === "tokenizer.ggml.tokens");
  if (!tokens || tokens[1].type !== GgufValueType.ARRAY) throw new Error("tokenizer metadata has no tokenizer.ggml.tokens");
  const nVocab = tokens[1].value.items.length;
  const headDim = lm.nEmbd / lm.nHead;
  const nEmbdKv = headDim * lm.nHeadKv;
  const type = WEIGHT_TYPES[lm.weightType];
  const a = lm.arch;
  const seed = profile.seed;

  const metadata: Array<[string, GgufValue]> = [
    ["general.architecture", kv.str(a)],
    ["general.name", kv.str(`leanvision-synthetic-${profile.name}`)],
    ["general.description", kv.str(`LeanVision synthetic LLaVA language model (random weights): ${profile.description}`)],
    ["general.file_type", kv.u32(FILE_TYPES[lm.weightType])],
    ["general.quantization_version", kv.u32(2)],
    [`${a}.context_length`, kv.u32(lm.contextLength)],
    [`${a}.embedding_length`, kv.u32(lm.nEmbd)],
    [`${a}.block_count`, kv.u32(lm.nLayer)],
    [`${a}.feed_forward_length`, kv.u32(lm.nFf)],
    [`${a}.attention.head_count`, kv.u32(lm.nHead)],
    [`${a}.attention.head_count_kv`, kv.u32(lm.nHeadKv)],
    [`${a}.attention.layer_norm_rms_epsilon`, kv.f32(lm.rmsEps)],
    [`${a}.rope.dimension_count`, kv.u32(headDim)],
    [`${a}.rope.freq_base`, kv.f32(lm.ropeFreqBase)],
    [`${a}.vocab_size`, kv.u32(nVocab)],
    ...tokenizer,
  ];
  if (!tokenizer.some(([key]) => key === "tokenizer.chat_template")) {
    metadata.push(["tokenizer.chat_template", kv.str(VICUNA_CHAT_TEMPLATE)]);
  }

  const tensors: GgufTensor[] = [embedding("token_embd.weight", [lm.nEmbd, nVocab], type, seed)];
  for (let i = 0; i < lm.nLayer; i++) {
    const p = `blk.${i}`;
    tensors.push(
      ones(`${p}.attn_norm.weight`, lm.nEmbd),
      matrix(`${p}.attn_q.weight`, [lm.nEmbd, lm.nEmbd], type, seed),
      matrix(`${p}.attn_k.weight`, [lm.nEmbd, nEmbdKv], type, seed),
      matrix(`${p}.attn_v.weight`, [lm.nEmbd, nEmbdKv], type, seed),
      matrix(`${p}.attn_output.weight`, [lm.nEmbd, lm.nEmbd], type, seed),
      ones(`${p}.ffn_norm.weight`, lm.nEmbd),
      matrix(`${p}.ffn_gate.weight`, [lm.nEmbd, lm.nFf], type, seed),
      matrix(`${p}.ffn_up.weight`, [lm.nEmbd, lm.nFf], type, seed),
      matrix(`${p}.ffn_down.weight`, [lm.nFf, lm.nEmbd], type, seed),
    );
    if (a === "qwen2") {
      tensors.push(bias(`${p}.attn_q.bias`, lm.nEmbd, seed), bias(`${p}.attn_k.bias`, nEmbdKv, seed), bias(`${p}.attn_v.bias`, nEmbdKv, seed));
    }
  }
  tensors.push(ones("output_norm.weight", lm.nEmbd));
  if (!lm.tiedOutput) tensors.push(matrix("output.weight", [lm.nEmbd, nVocab], type, seed));
  return { metadata, tensors };
}

/**
 * The mmproj. Keys and tensor names are the ones clip.cpp's clip_model_loader reads for projector
 * "mlp"; types follow the converter (2-D weights and the patch kernel in the chosen float type,
 * vectors f32). The CLS embedding, when present, is appended after the patches by the llava graph.
 */
export function mmprojFile(profile: GgufProfile): GgufFile {
  const v = profile.vision;
  const lmEmbd = profile.lm.nEmbd;
  const type = WEIGHT_TYPES[v.weightType];
  const seed = profile.seed ^ 0x5eed;
  const grid = imageTokenGrid(v);
  const nPos = grid.tokens + (grid.hasCls ? 1 : 0);
  const blockCount = v.towerLayers - 1; // LLaVA's feature layer is hidden state -2: the last layer is dropped

  const metadata: Array<[string, GgufValue]> = [
    ["general.architecture", kv.str("clip")],
    ["general.name", kv.str(`leanvision-synthetic-${profile.name}-${v.kind}`)],
    ["general.description", kv.str("image encoder for LLaVA")],
    ["general.file_type", kv.u32(FILE_TYPES[v.weightType])],
    ["clip.has_text_encoder", kv.bool(false)],
    ["clip.has_vision_encoder", kv.bool(true)],
    ["clip.has_llava_projector", kv.bool(true)],
    ["clip.projector_type", kv.str("mlp")],
    ["clip.use_gelu", kv.bool(v.kind === "siglip")], // CLIP uses quick-GELU; SigLIP's tanh-GELU maps to GELU
    ["clip.vision.image_size", kv.u32(v.imageSize)],
    ["clip.vision.patch_size", kv.u32(v.patchSize)],
    ["clip.vision.embedding_length", kv.u32(v.nEmbd)],
    ["clip.vision.feed_forward_length", kv.u32(v.nFf)],
    ["clip.vision.projection_dim", kv.u32(v.projectionDim)],
    ["clip.vision.attention.head_count", kv.u32(v.nHead)],
    ["clip.vision.attention.layer_norm_epsilon", kv.f32(v.eps)],
    ["clip.vision.block_count", kv.u32(blockCount)],
    ["clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [blockCount])],
    ...anyresMetadata(v),
    ["clip.vision.image_mean", kv.arr(GgufValueType.FLOAT32, v.imageMean)],
    ["clip.vision.image_std", kv.arr(GgufValueType.FLOAT32, v.imageStd)],
  ];

  const tensors: GgufTensor[] = [
    matrix("mm.0.weight", [v.nEmbd, v.projectorHidden], type, seed),
    bias("mm.0.bias", v.projectorHidden, seed),
    matrix("mm.2.weight", [v.projectorHidden, lmEmbd], type, seed),
    bias("mm.2.bias", lmEmbd, seed),
    // Conv kernel [kw, kh, c_in, c_out]; its fan-in is kw*kh*3. Always f16, as the converter writes 4-D tensors.
    { name: "v.patch_embd.weight", shape: [v.patchSize, v.patchSize, 3, v.nEmbd], type: GgmlType.F16,
      source: { kind: "random", std: 1 / Math.sqrt(v.patchSize * v.patchSize * 3), seed: hashSeed(seed, "v.patch_embd.weight") } },
    embedding("v.position_embd.weight", [v.nEmbd, nPos], type, seed),
  ];
  if (v.kind === "clip") {
    tensors.push(embedding("v.class_embd", [v.nEmbd], GgmlType.F32, seed), ones("v.pre_ln.weight", v.nEmbd), zeros("v.pre_ln.bias", v.nEmbd));
  } else {
    tensors.push(bias("v.patch_embd.bias", v.nEmbd, seed));
  }
  for (let i = 0; i < blockCount; i++) {
    const p = `v.blk.${i}`;
    for (const proj of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
      tensors.push(matrix(`${p}.${proj}.weight`, [v.nEmbd, v.nEmbd], type, seed), bias(`${p}.${proj}.bias`, v.nEmbd, seed));
    }
    tensors.push(
      ones(`${p}.ln1.weight`, v.nEmbd), zeros(`${p}.ln1.bias`, v.nEmbd),
      // ffn_up is [n_embd -> n_ff]; clip.cpp swaps up/down only for legacy files where ffn_down has n_embd rows.
      matrix(`${p}.ffn_up.weight`, [v.nEmbd, v.nFf], type, seed), bias(`${p}.ffn_up.bias`, v.nFf, seed),
      matrix(`${p}.ffn_down.weight`, [v.nFf, v.nEmbd], type, seed), bias(`${p}.ffn_down.bias`, v.nEmbd, seed),
      ones(`${p}.ln2.weight`, v.nEmbd), zeros(`${p}.ln2.bias`, v.nEmbd),
    );
  }
  // LLaVA-1.6's learned newline, under the name the legacy surgery keeps (clip.cpp reads no such tensor).
  if (v.anyres) tensors.push({ name: "model.image_newline", shape: [lmEmbd], type: GgmlType.F32, source: { kind: "random", std: 0.02, seed: hashSeed(seed, "model.image_newline") } });
  return { metadata, tensors };
}

/**
 * The LLaVA-1.6 keys convert_image_encoder_to_gguf.py copies from the model's config (llava-v1.6-vicuna-7b:
 * anyres, crop and split resolution 224, spatial_unpad, mlp2x_gelu), pinpoints flattened to [w0, h0, w1, h1, ...].
 */
function anyresMetadata(v: VisionTowerShape): Array<[string, GgufValue]> {
  if (!v.anyres) return [];
  return [
    ["clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, v.anyres.pinpoints.flat())],
    ["clip.vision.image_crop_resolution", kv.u32(224)],
    ["clip.vision.image_aspect_ratio", kv.str("anyres")],
    ["clip.vision.image_split_resolution", kv.u32(224)],
    ["clip.vision.mm_patch_merge_type", kv.str("spatial_unpad")],
    ["clip.vision.mm_projector_type", kv.str("mlp2x_gelu")],
  ];
}

/** sha256 of a file, hex. */
export function fileSha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}
