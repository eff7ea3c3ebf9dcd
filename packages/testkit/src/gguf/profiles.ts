// The synthetic LLaVA profiles: real architectures and shapes, random weights.

export type GgufProfileName = "tiny" | "tiny-siglip" | "small" | "llava-1.5-7b" | "nanollava" | "tiny-next" | "small-next" | "llava-1.6-7b";
export type WeightType = "f32" | "f16" | "q8_0" | "q4_0";

/** The language model half of a LLaVA pair (llama.cpp's "llama" or "qwen2" architecture). */
export interface LanguageModelShape {
  arch: "llama" | "qwen2";
  /** Vocab-only GGUF of the llama.cpp bundle whose tokenizer is copied (models/ggml-vocab-<vocab>.gguf). */
  vocab: "llama-spm" | "qwen2";
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  contextLength: number;
  ropeFreqBase: number;
  rmsEps: number;
  /** Output projection shares token_embd (no output.weight), as in Qwen2-0.5B. */
  tiedOutput: boolean;
  /** Type of the 2-D weight matrices (norms are always f32). */
  weightType: WeightType;
}

/** The mmproj half: a CLIP or SigLIP vision tower plus the LLaVA-1.5 `mlp` projector (mm.0 -> GELU -> mm.2). */
export interface VisionTowerShape {
  /** "clip": class embedding, pre-LN, quick-GELU, no patch bias. "siglip": no class embedding, no pre-LN, patch bias, GELU. */
  kind: "clip" | "siglip";
  imageSize: number;
  patchSize: number;
  nEmbd: number;
  nHead: number;
  nFf: number;
  /**
   * Layers of the original (Hugging Face) tower. LLaVA reads hidden state -2, so the converter keeps
   * towerLayers-1 layers and writes clip.vision.block_count = towerLayers-1 with
   * clip.vision.feature_layer = [towerLayers-1]; llama.cpp's llava graph then runs all of them.
   */
  towerLayers: number;
  /** clip.vision.projection_dim (CLIP's visual projection size, 0 for SigLIP; unused by llava). */
  projectionDim: number;
  eps: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** Hidden size of the projector (mm.0 output); LLaVA uses the language model's n_embd. */
  projectorHidden: number;
  weightType: WeightType;
  /**
   * LLaVA-1.6 (NeXT) any-resolution: the mmproj is written as llama.cpp's own 1.6 conversion writes
   * it (llava_surgery_v2.py + convert_image_encoder_to_gguf.py): these resolution candidates as
   * clip.vision.image_grid_pinpoints, the anyres / spatial_unpad keys, and `model.image_newline`.
   */
  anyres?: { pinpoints: Array<[number, number]> };
}

export interface GgufProfile {
  name: GgufProfileName;
  description: string;
  seed: number;
  lm: LanguageModelShape;
  vision: VisionTowerShape;
}

const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
const SIGLIP_MEAN: [number, number, number] = [0.5, 0.5, 0.5];
const SIGLIP_STD: [number, number, number] = [0.5, 0.5, 0.5];

const llamaLm = (s: Pick<LanguageModelShape, "nEmbd" | "nLayer" | "nHead" | "nHeadKv" | "nFf" | "weightType">): LanguageModelShape => ({
  arch: "llama", vocab: "llama-spm", contextLength: 4096, ropeFreqBase: 10000, rmsEps: 1e-5, tiedOutput: false, ...s,
});
const qwen2Lm = (s: Pick<LanguageModelShape, "nEmbd" | "nLayer" | "nHead" | "nHeadKv" | "nFf" | "weightType">): LanguageModelShape => ({
  arch: "qwen2", vocab: "qwen2", contextLength: 32768, ropeFreqBase: 1e6, rmsEps: 1e-6, tiedOutput: true, ...s,
});
type TowerSize = Pick<VisionTowerShape, "nEmbd" | "nHead" | "nFf" | "towerLayers" | "projectorHidden" | "weightType">;
const clipTower = (s: TowerSize & { projectionDim: number }): VisionTowerShape => ({
  kind: "clip", imageSize: 336, patchSize: 14, eps: 1e-5, imageMean: CLIP_MEAN, imageStd: CLIP_STD, ...s,
});
/** LLaVA-1.6's resolution candidates (its config's image_grid_pinpoints): 1x2, 2x1, 2x2, 3x1 and 1x3 tiles of 336 px. */
export const LLAVA_NEXT_PINPOINTS: Array<[number, number]> = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
const siglipTower = (s: TowerSize): VisionTowerShape => ({
  kind: "siglip", imageSize: 384, patchSize: 14, eps: 1e-6, imageMean: SIGLIP_MEAN, imageStd: SIGLIP_STD, projectionDim: 0, ...s,
});

/**
 * The documented profiles. Image token counts follow llama.cpp: (imageSize / patchSize)^2 patches,
 * i.e. 24x24 = 576 for CLIP at 336 px and 27x27 = 729 for SigLIP at 384 px (the CLS token is dropped
 * before the projector). The `-next` / 1.6 profiles count that per tile: an image larger than
 * 336 px becomes an overview plus the tiles of its best pinpoint (the 640x488 sample photo: 2x2 + 1
 * tiles, 2,880 tokens).
 */
const LLAVA_PROFILES: Record<Exclude<GgufProfileName, `${string}-next` | "llava-1.6-7b">, GgufProfile> = {
  tiny: {
    name: "tiny",
    description: "Test speed. LLaMA (256-d, 4 layers, q8_0) with the LLaMA/Vicuna SPM tokenizer; CLIP 336/14 (128-d, 3 layers run), 576 image tokens + CLS.",
    seed: 1,
    lm: llamaLm({ nEmbd: 256, nLayer: 4, nHead: 4, nHeadKv: 4, nFf: 704, weightType: "q8_0" }),
    vision: clipTower({ nEmbd: 128, nHead: 4, nFf: 512, towerLayers: 4, projectionDim: 128, projectorHidden: 256, weightType: "f16" }),
  },
  "tiny-siglip": {
    name: "tiny-siglip",
    description: "Test speed, SigLIP/Qwen2 variant. Qwen2 (256-d, 2 layers, GQA 4/2, tied output, q8_0) with the Qwen2 tokenizer; SigLIP 384/14 (128-d, 3 layers run), 729 image tokens, no CLS.",
    seed: 2,
    lm: qwen2Lm({ nEmbd: 256, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 704, weightType: "q8_0" }),
    vision: siglipTower({ nEmbd: 128, nHead: 4, nFf: 512, towerLayers: 4, projectorHidden: 256, weightType: "f16" }),
  },
  small: {
    name: "small",
    description: "Demo default. LLaMA (1280-d, 16 layers, 10 heads, FFN 3456, q8_0, 0.40B params) with the LLaMA/Vicuna SPM tokenizer; CLIP 336/14 (384-d, 6 layers run), 576 image tokens + CLS.",
    seed: 3,
    lm: llamaLm({ nEmbd: 1280, nLayer: 16, nHead: 10, nHeadKv: 10, nFf: 3456, weightType: "q8_0" }),
    vision: clipTower({ nEmbd: 384, nHead: 6, nFf: 1536, towerLayers: 7, projectionDim: 384, projectorHidden: 1280, weightType: "f16" }),
  },
  "llava-1.5-7b": {
    name: "llava-1.5-7b",
    description: "LLaVA-1.5-7B shapes. LLaMA-7B / Vicuna-7B (4096-d, 32 layers, 32 heads, FFN 11008, q4_0); CLIP ViT-L/14-336 (1024-d, 16 heads, FFN 4096, 23 of 24 layers, f16); projector 1024 -> 4096 -> 4096; 576 image tokens + CLS.",
    seed: 7,
    lm: llamaLm({ nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 32, nFf: 11008, weightType: "q4_0" }),
    vision: clipTower({ nEmbd: 1024, nHead: 16, nFf: 4096, towerLayers: 24, projectionDim: 768, projectorHidden: 4096, weightType: "f16" }),
  },
  nanollava: {
    name: "nanollava",
    description: "nanoLLaVA shapes. Qwen1.5-0.5B (1024-d, 24 layers, 16 heads, FFN 2816, tied output, q8_0) with the Qwen2 tokenizer; SigLIP-so400m/14-384 (1152-d, 16 heads, FFN 4304, 26 of 27 layers, f16); projector 1152 -> 1024 -> 1024; 729 image tokens, no CLS.",
    seed: 5,
    lm: qwen2Lm({ nEmbd: 1024, nLayer: 24, nHead: 16, nHeadKv: 16, nFf: 2816, weightType: "q8_0" }),
    vision: siglipTower({ nEmbd: 1152, nHead: 16, nFf: 4304, towerLayers: 27, projectorHidden: 1024, weightType: "f16" }),
  },
};

/** A LLaVA-1.6 (NeXT) profile: a 1.5 profile's shapes with LLaVA-1.6's pinpoints and image newline. */
function nextProfile(base: GgufProfile, name: GgufProfileName, seed: number, description: string): GgufProfile {
  return { ...base, name, description, seed, vision: { ...base.vision, anyres: { pinpoints: LLAVA_NEXT_PINPOINTS } } };
}

export const GGUF_PROFILES: Readonly<Record<GgufProfileName, GgufProfile>> = {
  ...LLAVA_PROFILES,
  "tiny-next": nextProfile(LLAVA_PROFILES.tiny, "tiny-next", 11,
    "Test speed, LLaVA-1.6 (NeXT) layout. tiny's LLaMA (256-d, 4 layers, q8_0) and CLIP 336/14 (128-d, 3 layers run); LLaVA-1.6 pinpoints, 576 tokens + CLS per tile, 2,880 for the sample photo."),
  "small-next": nextProfile(LLAVA_PROFILES.small, "small-next", 13,
    "Demo size, LLaVA-1.6 (NeXT) layout. small's LLaMA (1280-d, 16 layers, q8_0) and CLIP 336/14 (384-d, 6 layers run); LLaVA-1.6 pinpoints, 576 tokens + CLS per tile, 2,880 for the sample photo."),
  "llava-1.6-7b": nextProfile(LLAVA_PROFILES["llava-1.5-7b"], "llava-1.6-7b", 17,
    "LLaVA-1.6-Vicuna-7B shapes. LLaMA-7B (4096-d, 32 layers, 32 heads, FFN 11008, q4_0); CLIP ViT-L/14-336 (1024-d, 16 heads, FFN 4096, 23 of 24 layers, f16); projector 1024 -> 4096 -> 4096, image newline; LLaVA-1.6 pinpoints, 576 tokens + CLS per tile, 2,880 for the sample photo."),
};

/** Patch grid side and visual token count llama.cpp produces for a profile's mmproj. */
export function imageTokenGrid(vision: VisionTowerShape): { side: number; tokens: number; hasCls: boolean } {
  const side = Math.floor(vision.imageSize / vision.patchSize);
  return { side, tokens: side * side, hasCls: vision.kind === "clip" };
}
