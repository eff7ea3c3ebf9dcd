// Synthetic LLaVA-1.5 models in the folder layout transformers.js loads (`from_pretrained(dir)`):
// config.json, preprocessor_config.json, processor_config.json, tokenizer.json,
// tokenizer_config.json, generation_config.json and onnx/{vision_encoder,embed_tokens,
// decoder_model_merged}.onnx. Random weights, real architectures and shapes.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildDecoder, buildEmbedTokens, type LanguageShape } from "./language.js";
import { buildLlavaTokenizer, IMAGE_TOKEN } from "./tokenizer.js";
import { buildVisionEncoder, type VisionShape } from "./vision.js";

export { buildLlavaTokenizer, LLAVA_CHAT_TEMPLATE, llamaSpmVocabPath } from "./tokenizer.js";
export type { VisionShape } from "./vision.js";
export type { LanguageShape } from "./language.js";

export type OnnxProfileName = "tiny" | "llava-1.5-7b-shaped";

export interface OnnxProfile {
  vision: VisionShape;
  /** Vocabulary comes from the tokenizer (32000 SentencePiece pieces + <image> + <pad>). */
  language: Omit<LanguageShape, "vocab">;
  description: string;
}

/**
 * Documented shapes. `llava-1.5-7b-shaped` is LLaVA-1.5-7B's full vision side (CLIP ViT-L/14 at 336 px,
 * 24 layers of which 23 run up to the feature layer, 577 tokens, the 1024 -> 4096 -> 4096 GELU projector)
 * and its language model at full width (hidden 4096, 32 heads, MLP 11008, vocab 32002) with 1 decoder
 * layer instead of 32, so every fp32 graph stays under protobuf's 2 GB limit without external data
 * (decoder ~1.3 GB, vision ~1.2 GB, embeddings ~0.5 GB) and it runs on a 2-core machine.
 */
export const ONNX_PROFILES: Record<OnnxProfileName, OnnxProfile> = {
  tiny: {
    vision: { imageSize: 224, patchSize: 14, hidden: 64, heads: 4, intermediate: 256, layers: 3, projectTo: 64 },
    language: { hidden: 64, heads: 4, intermediate: 172, layers: 2, ropeTheta: 10000, rmsEps: 1e-5 },
    description: "CLIP-shaped ViT 224/14 (16x16 patches, 2 of 3 layers run, dim 64) + 2-layer LLaMA (dim 64)"
  },
  "llava-1.5-7b-shaped": {
    vision: { imageSize: 336, patchSize: 14, hidden: 1024, heads: 16, intermediate: 4096, layers: 24, projectTo: 4096 },
    language: { hidden: 4096, heads: 32, intermediate: 11008, layers: 1, ropeTheta: 10000, rmsEps: 1e-5 },
    description: "CLIP ViT-L/14-336 (23 of 24 layers run) + 4096->4096 projector + LLaMA-7B-wide decoder with 1 layer"
  }
};

/** Bumped whenever the generated files change, so stale caches are rebuilt. */
const FORMAT_VERSION = 2;

function defaultCacheDir(): string {
  return process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
}

export interface EnsureOnnxOptions {
  cacheDir?: string;
  onProgress?: (done: number, total: number) => void;
}

/** Writes (once) and returns a transformers.js model folder for the profile. */
export async function ensureLlavaOnnx(profile: OnnxProfileName, opts: EnsureOnnxOptions = {}): Promise<{ profile: string; dir: string }> {
  const spec = ONNX_PROFILES[profile];
  if (!spec) throw new Error(`Unknown ONNX profile "${profile}"; use one of ${Object.keys(ONNX_PROFILES).join(", ")}`);
  const dir = path.join(opts.cacheDir ?? defaultCacheDir(), "onnx", `${profile}-v${FORMAT_VERSION}`);
  if (existsSync(path.join(dir, ".complete"))) return { profile, dir };

  // Build into a private folder and rename, so a half-written model is never picked up.
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, "onnx"), { recursive: true });
  const total = 4;
  const progress = (done: number) => opts.onProgress?.(done, total);
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
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  renameSync(tmp, dir);
  progress(total);
  return { profile, dir };
}
