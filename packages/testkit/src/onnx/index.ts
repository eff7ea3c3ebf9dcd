// Synthetic LLaVA-style models in the folder layouts transformers.js loads (`from_pretrained(dir)`).
// LLaVA-1.5 (`tiny`, `llava-1.5-7b-shaped`): config.json, preprocessor_config.json, processor_config.json,
// tokenizer.json, tokenizer_config.json, generation_config.json and onnx/{vision_encoder,embed_tokens,
// decoder_model_merged}.onnx. SigLIP + Qwen2 models (`tiny-onevision`, `onevision-0.5b-shaped`:
// llava-hf/llava-onevision-qwen2-0.5b-ov-hf's layout; `tiny-nanollava`: Xenova/nanoLLaVA's) with every
// graph in each requested dtype (`_fp16`, `_q4` beside the float32 file), see MODELS.md.
// Random weights, real architectures and shapes.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildDecoder, buildEmbedTokens, decoderGraph, embedTokensGraph, type LanguageShape } from "./language.js";
import type { OnnxModel } from "./graph.js";
import { convertDtype, DTYPE_SUFFIX, encodeModel, type OnnxDtype } from "./quantize.js";
import { buildSiglipEncoder, type SiglipNaming, type SiglipShape } from "./siglip.js";
import { buildLlavaTokenizer, buildQwen2Tokenizer, CHATML_TEMPLATE, IMAGE_TOKEN, ONEVISION_CHAT_TEMPLATE } from "./tokenizer.js";
import { buildVisionEncoder, type VisionShape } from "./vision.js";
import { ensureTokenPackerProjector, TOKENPACKER_PROFILES, type TokenPackerProfileName } from "../gguf/tokenpacker.js";

export { buildLlavaTokenizer, buildQwen2Tokenizer, CHATML_TEMPLATE, LLAVA_CHAT_TEMPLATE, llamaSpmVocabPath, ONEVISION_CHAT_TEMPLATE, qwen2VocabPath } from "./tokenizer.js";
export { convertDtype, dequantizeBlockwise4, DTYPE_SUFFIX, quantize8, quantizeBlockwise4, tensorFloats, toFp16, toQ4, toQ8, type OnnxDtype } from "./quantize.js";
export type { VisionShape } from "./vision.js";
export type { SiglipShape } from "./siglip.js";
export type { LanguageShape } from "./language.js";

export type OnnxProfileName =
  | "tiny"
  | "llava-1.5-7b-shaped"
  | "tiny-onevision"
  | "tiny-nanollava"
  | "onevision-0.5b-shaped"
  | "tiny-tokenpacker"
  | "small-tokenpacker";

/** LLaVA-1.5: CLIP (with CLS, dropped by the exported graph) + LLaMA, float32 only. */
export interface Llava15OnnxProfile {
  family: "llava";
  vision: VisionShape;
  /** Vocabulary comes from the tokenizer (32000 SentencePiece pieces + <image> + <pad>). */
  language: Omit<LanguageShape, "vocab">;
  description: string;
  /**
   * A TokenPacker projector (the same synthetic checkpoint the GGUF profile of that name converts) whose
   * ONNX file comes with the folder (ensureLlavaOnnx's projectorPath); its width, grid and layers fit the tower.
   */
  tokenPacker?: TokenPackerProfileName;
}

/** SigLIP (no CLS, 729 patches at 384/14) + Qwen2, in transformers.js' OneVision or nanoLLaVA layout. */
export interface SiglipOnnxProfile {
  family: SiglipNaming;
  /** `layers` run up to the feature layer; `towerLayers` is what config.json's vision_config states. */
  vision: SiglipShape & { towerLayers: number };
  /** Vocabulary: Qwen2's 151936 ids. */
  language: Omit<LanguageShape, "vocab" | "names">;
  /** dtypes written when none are asked for. */
  dtypes: OnnxDtype[];
  description: string;
}

export type OnnxProfile = Llava15OnnxProfile | SiglipOnnxProfile;

/**
 * Documented shapes. `llava-1.5-7b-shaped` is LLaVA-1.5-7B's full vision side (CLIP ViT-L/14 at 336 px,
 * 24 layers of which 23 run up to the feature layer, 577 tokens, the 1024 -> 4096 -> 4096 GELU projector)
 * and its language model at full width (hidden 4096, 32 heads, MLP 11008, vocab 32002) with 1 decoder
 * layer instead of 32, so every fp32 graph stays under protobuf's 2 GB limit without external data
 * (decoder ~1.3 GB, vision ~1.2 GB, embeddings ~0.5 GB) and it runs on a 2-core machine.
 * `onevision-0.5b-shaped` is LLaVA-OneVision-0.5B's full vision side (SigLIP-so400m/14 at 384 px, 26 layers,
 * 729 tokens, 1152 -> 896 -> 896 GELU projector; vision ~1.6 GB fp32) and Qwen2-0.5B at full width (hidden
 * 896, 14 heads / 2 key-value heads, MLP 4864, vocab 151936, embeddings 545 MB as in the real repo) with 8
 * of its 24 decoder layers.
 */
export const ONNX_PROFILES = {
  tiny: {
    family: "llava",
    vision: { imageSize: 224, patchSize: 14, hidden: 64, heads: 4, intermediate: 256, layers: 3, projectTo: 64 },
    language: { hidden: 64, heads: 4, intermediate: 172, layers: 2, ropeTheta: 10000, rmsEps: 1e-5 },
    description: "CLIP-shaped ViT 224/14 (16x16 patches, 2 of 3 layers run, dim 64) + 2-layer LLaMA (dim 64)"
  },
  "llava-1.5-7b-shaped": {
    family: "llava",
    vision: { imageSize: 336, patchSize: 14, hidden: 1024, heads: 16, intermediate: 4096, layers: 24, projectTo: 4096 },
    language: { hidden: 4096, heads: 32, intermediate: 11008, layers: 1, ropeTheta: 10000, rmsEps: 1e-5 },
    description: "CLIP ViT-L/14-336 (23 of 24 layers run) + 4096->4096 projector + LLaMA-7B-wide decoder with 1 layer"
  },
  "tiny-onevision": {
    family: "llava_onevision",
    vision: { imageSize: 384, patchSize: 14, hidden: 64, heads: 4, intermediate: 128, layers: 2, towerLayers: 2, projectTo: 64 },
    language: { hidden: 64, heads: 4, kvHeads: 2, qkvBias: true, intermediate: 128, layers: 2, ropeTheta: 1e6, rmsEps: 1e-6 },
    dtypes: ["fp32", "fp16", "q4", "q8"],
    description: "LLaVA-OneVision layout: SigLIP-shaped ViT 384/14 (27x27 = 729 patches, no CLS, 2 layers, dim 64) + 2-layer Qwen2 (dim 64, 4 heads / 2 kv heads); fp32, fp16, q4, q8"
  },
  "tiny-nanollava": {
    family: "llava_qwen2",
    vision: { imageSize: 384, patchSize: 14, hidden: 64, heads: 4, intermediate: 128, layers: 2, towerLayers: 3, projectTo: 64 },
    language: { hidden: 64, heads: 4, kvHeads: 4, qkvBias: true, intermediate: 128, layers: 2, ropeTheta: 1e6, rmsEps: 1e-6 },
    dtypes: ["fp32", "fp16", "q4", "q8"],
    description: "nanoLLaVA layout (llava_qwen2): SigLIP-shaped ViT 384/14 (729 patches, 2 of 3 layers run, dim 64) + 2-layer Qwen2 (dim 64); fp32, fp16, q4, q8"
  },
  "onevision-0.5b-shaped": {
    family: "llava_onevision",
    vision: { imageSize: 384, patchSize: 14, hidden: 1152, heads: 16, intermediate: 4304, layers: 26, towerLayers: 26, projectTo: 896 },
    language: { hidden: 896, heads: 14, kvHeads: 2, qkvBias: true, intermediate: 4864, layers: 8, ropeTheta: 1e6, rmsEps: 1e-6 },
    dtypes: ["fp32", "q4"],
    description: "LLaVA-OneVision-0.5B shapes: SigLIP-so400m/14-384 (26 layers, 729 tokens) + Qwen2-0.5B-wide decoder (896, 14/2 heads, MLP 4864) with 8 of 24 layers"
  },
  // The GGUF tiny / small pairs' shapes in the transformers.js LLaVA-1.5 layout (24x24 patches + CLS, the tower
  // run up to hidden state layers - 1 = TokenPacker's feature layer), plus the *-tokenpacker projector as ONNX.
  "tiny-tokenpacker": {
    family: "llava",
    vision: { imageSize: 336, patchSize: 14, hidden: 128, heads: 4, intermediate: 512, layers: 4, projectTo: 256 },
    language: { hidden: 256, heads: 4, intermediate: 704, layers: 2, ropeTheta: 10000, rmsEps: 1e-5 },
    tokenPacker: "tiny-tokenpacker",
    description: "CLIP 336/14 (24x24 patches, 3 of 4 layers run, dim 128) + 2-layer LLaMA (dim 256) + TokenPacker projector (hidden states 1, 2, 2, 3; ONNX)"
  },
  "small-tokenpacker": {
    family: "llava",
    vision: { imageSize: 336, patchSize: 14, hidden: 384, heads: 6, intermediate: 1536, layers: 7, projectTo: 1280 },
    language: { hidden: 1280, heads: 10, intermediate: 3456, layers: 8, ropeTheta: 10000, rmsEps: 1e-5 },
    tokenPacker: "small-tokenpacker",
    description: "The small pair's shapes: CLIP 336/14 (6 of 7 layers run, dim 384) + LLaMA 1280-d (FFN 3456) with 8 of its 16 layers + TokenPacker projector (hidden states 3, 4, 5, 6; ONNX)"
  }
} satisfies Record<OnnxProfileName, OnnxProfile>;

/** Bumped whenever the generated files change, so stale caches are rebuilt. */
const FORMAT_VERSION = 2;
/** The same for the SigLIP + Qwen2 profiles. */
const SIGLIP_FORMAT_VERSION = 4;

function defaultCacheDir(): string {
  return process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
}

export interface EnsureOnnxOptions {
  cacheDir?: string;
  onProgress?: (done: number, total: number) => void;
  /** SigLIP profiles: the dtypes to have on disk (default: the profile's). A folder missing one is rebuilt with all of them. */
  dtypes?: OnnxDtype[];
}

export interface LlavaOnnxFolder {
  profile: string;
  dir: string;
  /** The TokenPacker projector (ONNX) of a *-tokenpacker profile: withLeanVision's / openVisionRuntime's projectorPath. */
  projectorPath?: string;
}

/** Writes (once) and returns a transformers.js model folder for the profile (and its TokenPacker projector file, if it has one). */
export async function ensureLlavaOnnx(profile: OnnxProfileName, opts: EnsureOnnxOptions = {}): Promise<LlavaOnnxFolder> {
  const spec: OnnxProfile | undefined = Object.hasOwn(ONNX_PROFILES, profile) ? ONNX_PROFILES[profile] : undefined;
  if (!spec) throw new Error(`Unknown ONNX profile "${profile}"; use one of ${Object.keys(ONNX_PROFILES).join(", ")}`);
  const folder = await ensureFolder(profile, spec, opts);
  if (spec.family !== "llava" || !spec.tokenPacker) return folder;
  const tp = TOKENPACKER_PROFILES[spec.tokenPacker];
  if (tp.width !== spec.vision.hidden || tp.lmWidth !== spec.language.hidden || tp.featureLayer !== spec.vision.layers - 1) {
    throw new Error(`ONNX profile ${profile} does not fit TokenPacker profile ${tp.name} (width, language model width, feature layer)`);
  }
  return { ...folder, projectorPath: ensureTokenPackerProjector(tp.name, { cacheDir: opts.cacheDir ?? defaultCacheDir(), format: "onnx" }) };
}

async function ensureFolder(profile: OnnxProfileName, spec: OnnxProfile, opts: EnsureOnnxOptions): Promise<LlavaOnnxFolder> {
  const dir = path.join(opts.cacheDir ?? defaultCacheDir(), "onnx", `${profile}-v${spec.family === "llava" ? FORMAT_VERSION : SIGLIP_FORMAT_VERSION}`);
  const marker = path.join(dir, ".complete");
  let dtypes: OnnxDtype[] = [];
  if (spec.family !== "llava") {
    const wanted = opts.dtypes ?? spec.dtypes;
    const have = existsSync(marker) ? (readFileSync(marker, "utf8").split("\n")[1] ?? "").split(",").filter(Boolean) : [];
    if (existsSync(marker) && wanted.every((d) => have.includes(d))) return { profile, dir };
    dtypes = (["fp32", "fp16", "q4", "q8"] as const).filter((d) => wanted.includes(d) || have.includes(d));
  } else if (existsSync(marker)) {
    return { profile, dir };
  }

  // Build into a private folder and rename, so a half-written model is never picked up.
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, "onnx"), { recursive: true });
  if (spec.family === "llava") await writeLlava15(tmp, profile, spec, opts.onProgress);
  else await writeSiglipLlava(tmp, profile, spec, dtypes, opts.onProgress);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  renameSync(tmp, dir);
  return { profile, dir };
}

async function writeLlava15(tmp: string, profile: string, spec: Llava15OnnxProfile, onProgress?: (done: number, total: number) => void): Promise<void> {
  const total = 4;
  const progress = (done: number) => onProgress?.(done, total);
  const json = (name: string, value: unknown) => writeFileSync(path.join(tmp, name), JSON.stringify(value, null, 2));

  const tok = await buildLlavaTokenizer();
  json("tokenizer.json", tok.tokenizerJson);
  json("tokenizer_config.json", tok.tokenizerConfig);
  progress(1);
  const language: LanguageShape = { ...spec.language, vocab: tok.vocabSize };
  const { vision } = spec;
  // Distinct seeds per graph keep the files independent of build order.
  writeFileSync(path.join(tmp, "onnx", "vision_encoder.onnx"), buildVisionEncoder(vision, 1).bytes);
  progress(2);
  writeFileSync(path.join(tmp, "onnx", "embed_tokens.onnx"), buildEmbedTokens(language, 2).bytes);
  progress(3);
  writeFileSync(path.join(tmp, "onnx", "decoder_model_merged.onnx"), buildDecoder(language, 3).bytes);

  json("config.json", {
    architectures: ["LlavaForConditionalGeneration"],
    model_type: "llava",
    image_token_index: tok.imageTokenId,
    pad_token_id: tok.padTokenId,
    ignore_index: -100,
    projector_hidden_act: "gelu",
    vision_feature_layer: -2,
    vision_feature_select_strategy: "default",
    leanvision_profile: profile,
    text_config: {
      model_type: "llama",
      architectures: ["LlamaForCausalLM"],
      hidden_size: language.hidden,
      intermediate_size: language.intermediate,
      num_attention_heads: language.heads,
      num_key_value_heads: language.heads,
      head_dim: language.hidden / language.heads,
      num_hidden_layers: language.layers,
      vocab_size: language.vocab,
      max_position_embeddings: 4096,
      rms_norm_eps: language.rmsEps,
      rope_theta: language.ropeTheta,
      hidden_act: "silu",
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: tok.padTokenId
    },
    vision_config: {
      model_type: "clip_vision_model",
      hidden_size: vision.hidden,
      intermediate_size: vision.intermediate,
      num_attention_heads: vision.heads,
      num_hidden_layers: vision.layers,
      image_size: vision.imageSize,
      patch_size: vision.patchSize,
      hidden_act: "quick_gelu",
      layer_norm_eps: 1e-5,
      projection_dim: 768
    }
  });
  json("generation_config.json", { bos_token_id: 1, eos_token_id: 2, pad_token_id: tok.padTokenId });
  const size = vision.imageSize;
  json("preprocessor_config.json", {
    image_processor_type: "CLIPImageProcessor",
    processor_class: "LlavaProcessor",
    do_resize: true,
    size: { shortest_edge: size },
    resample: 3,
    do_center_crop: true,
    crop_size: { height: size, width: size },
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
    do_convert_rgb: true
  });
  // The exported vision encoder already drops CLS, so no additional image tokens.
  json("processor_config.json", {
    processor_class: "LlavaProcessor",
    image_token: IMAGE_TOKEN,
    patch_size: vision.patchSize,
    num_additional_image_tokens: 0,
    vision_feature_select_strategy: "default"
  });
  writeFileSync(path.join(tmp, ".complete"), `${profile} v${FORMAT_VERSION}\n`);
  progress(total);
}

/** LLaVA-OneVision's anyres grid (config.json and preprocessor_config.json): 384..2304 in steps of 384, both ways. */
const ONEVISION_PINPOINTS = Array.from({ length: 36 }, (_, i) => [384 * (Math.floor(i / 6) + 1), 384 * ((i % 6) + 1)]);

async function writeSiglipLlava(
  tmp: string,
  profile: string,
  spec: SiglipOnnxProfile,
  dtypes: OnnxDtype[],
  onProgress?: (done: number, total: number) => void
): Promise<void> {
  const onevision = spec.family === "llava_onevision";
  const total = 1 + 3 * dtypes.length;
  let done = 0;
  const step = () => onProgress?.(++done, total);
  const json = (name: string, value: unknown) => writeFileSync(path.join(tmp, name), JSON.stringify(value, null, 2));

  const tok = await buildQwen2Tokenizer(onevision ? [IMAGE_TOKEN, "<video>"] : [IMAGE_TOKEN], onevision ? ONEVISION_CHAT_TEMPLATE : CHATML_TEMPLATE);
  json("tokenizer.json", tok.tokenizerJson);
  json("tokenizer_config.json", tok.tokenizerConfig);
  json("added_tokens.json", tok.addedTokens);
  json("special_tokens_map.json", tok.specialTokensMap);
  json("vocab.json", tok.vocabJson);
  writeFileSync(path.join(tmp, "merges.txt"), tok.mergesTxt);
  step();

  const { vision } = spec;
  const names = onevision ? { model: "language_model.model", lmHead: "language_model.lm_head" } : { model: "model", lmHead: "lm_head" };
  const language: LanguageShape = { ...spec.language, vocab: tok.vocabSize, names };
  // One graph at a time (the full-size vision tower is 1.6 GB of float32), each written in every dtype.
  // Seeds differ per layout, so the two tiny profiles are different models.
  const seed = onevision ? 1 : 11;
  const graphs: Array<[string, () => { toModel(name: string): OnnxModel }]> = [
    ["vision_encoder", () => buildSiglipEncoder(vision, spec.family, seed)],
    ["embed_tokens", () => embedTokensGraph(language, seed + 1)],
    ["decoder_model_merged", () => decoderGraph(language, seed + 2)]
  ];
  for (const [name, build] of graphs) {
    const model = build().toModel(name);
    for (const dtype of dtypes) {
      writeFileSync(path.join(tmp, "onnx", `${name}${DTYPE_SUFFIX[dtype]}.onnx`), encodeModel(convertDtype(model, dtype)));
      step();
    }
  }

  const grid = Math.floor(vision.imageSize / vision.patchSize);
  const imageTokens = grid * grid;
  const textConfig = {
    _name_or_path: onevision ? "Qwen/Qwen2-0.5B-Instruct" : "vilm/Quyen-SE-v0.1",
    architectures: ["Qwen2ForCausalLM"],
    bos_token_id: 151643,
    eos_token_id: 151645,
    hidden_act: "silu",
    hidden_size: language.hidden,
    intermediate_size: language.intermediate,
    max_position_embeddings: 32768,
    max_window_layers: language.layers,
    model_type: "qwen2",
    num_attention_heads: language.heads,
    num_hidden_layers: language.layers,
    num_key_value_heads: language.kvHeads ?? language.heads,
    rms_norm_eps: language.rmsEps,
    rope_theta: language.ropeTheta,
    sliding_window: onevision ? null : 4096,
    tie_word_embeddings: onevision,
    torch_dtype: "bfloat16",
    use_sliding_window: false,
    vocab_size: language.vocab
  };
  const visionConfig = {
    hidden_act: "gelu_pytorch_tanh",
    hidden_size: vision.hidden,
    image_size: vision.imageSize,
    intermediate_size: vision.intermediate,
    layer_norm_eps: 1e-6,
    model_type: "siglip_vision_model",
    num_attention_heads: vision.heads,
    num_hidden_layers: vision.towerLayers,
    patch_size: vision.patchSize,
    vision_use_head: false
  };
  const siglipProcessor = {
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: vision.imageSize, width: vision.imageSize }
  };
  if (onevision) {
    json("config.json", {
      architectures: ["LlavaOnevisionForConditionalGeneration"],
      ignore_index: -100,
      image_grid_pinpoints: ONEVISION_PINPOINTS,
      image_token_index: tok.imageTokenId,
      model_type: "llava_onevision",
      projector_hidden_act: "gelu",
      text_config: textConfig,
      tie_word_embeddings: true,
      torch_dtype: "float16",
      transformers_version: "4.45.0.dev0",
      use_image_newline_parameter: true,
      video_token_index: tok.imageTokenId + 1,
      vision_aspect_ratio: "anyres_max_9",
      vision_config: visionConfig,
      vision_feature_layer: -1,
      vision_feature_select_strategy: "full",
      leanvision_profile: profile
    });
    json("generation_config.json", { _from_model_config: true, bos_token_id: 151643, eos_token_id: 151645, transformers_version: "4.45.0.dev0" });
    json("preprocessor_config.json", {
      ...siglipProcessor,
      do_convert_rgb: true,
      do_pad: true,
      image_grid_pinpoints: ONEVISION_PINPOINTS,
      image_processor_type: "LlavaOnevisionImageProcessor",
      processor_class: "LlavaOnevisionProcessor"
    });
    json("processor_config.json", {
      image_token: IMAGE_TOKEN,
      num_image_tokens: imageTokens,
      processor_class: "LlavaOnevisionProcessor",
      video_token: "<video>",
      vision_feature_select_strategy: "full"
    });
    json("chat_template.json", { chat_template: ONEVISION_CHAT_TEMPLATE });
  } else {
    json("config.json", {
      architectures: ["LlavaQwen2ForCausalLM"],
      auto_map: {
        AutoConfig: "qnguyen3/nanoLLaVA--configuration_llava_qwen2.LlavaQwen2Config",
        AutoModelForCausalLM: "qnguyen3/nanoLLaVA--modeling_llava_qwen2.LlavaQwen2ForCausalLM"
      },
      bos_token_id: 151645,
      eos_token_id: 151645,
      freeze_mm_mlp_adapter: false,
      hidden_act: "silu",
      hidden_size: language.hidden,
      image_aspect_ratio: "pad",
      image_token_index: tok.imageTokenId,
      intermediate_size: language.intermediate,
      max_position_embeddings: 32768,
      max_window_layers: language.layers,
      mm_hidden_size: vision.hidden,
      mm_projector_type: "mlp2x_gelu",
      mm_vision_tower: "google/siglip-so400m-patch14-384",
      model_type: "llava_qwen2",
      num_attention_heads: language.heads,
      num_hidden_layers: language.layers,
      num_image_tokens: imageTokens,
      num_key_value_heads: language.kvHeads ?? language.heads,
      rms_norm_eps: language.rmsEps,
      rope_theta: language.ropeTheta,
      sliding_window: 4096,
      text_config: { ...textConfig, num_image_tokens: imageTokens },
      tie_word_embeddings: false,
      torch_dtype: "bfloat16",
      use_cache: true,
      use_mm_proj: true,
      use_sliding_window: false,
      vision_config: { ...visionConfig, num_image_tokens: imageTokens },
      vocab_size: language.vocab,
      leanvision_profile: profile
    });
    json("generation_config.json", { bos_token_id: 151643, do_sample: false, eos_token_id: [151645, 151643], pad_token_id: 151643 });
    json("preprocessor_config.json", { ...siglipProcessor, image_processor_type: "SiglipImageProcessor", processor_class: "SiglipProcessor" });
  }
  writeFileSync(path.join(tmp, ".complete"), `${profile} v${SIGLIP_FORMAT_VERSION}\n${dtypes.join(",")}\n`);
}
