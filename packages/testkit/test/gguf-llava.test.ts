import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { LeanVisionError } from "@leanvision/core";
import { getLlama, type Llama, LlamaCompletion, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ensureLlavaGguf,
  GGUF_PROFILES,
  type GgufProfileName,
  type LlavaGgufPair,
  readGgufManifest,
  sampleImagePath,
} from "../src/gguf/index.js";

const cacheDir = mkdtempSync(path.join(os.tmpdir(), "leanvision-gguf-cache-"));
let llama: Llama;
beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

type Meta = Record<string, { value: unknown; type: number; subType?: number }>;
async function readHeader(file: string) {
  const parsed = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const meta = parsed.typedMetadata as Meta;
  const shape = (name: string) => parsed.tensorInfos.find((t) => t.name === name)?.shape.map(Number);
  return { meta, shape, names: parsed.tensorInfos.map((t) => t.name) };
}

async function checkLanguageModel(pair: LlavaGgufPair) {
  const model: LlamaModel = await llama.loadModel({ modelPath: pair.modelPath });
  try {
    // The real tokenizer: a sentence survives tokenize -> detokenize, in far fewer tokens than characters.
    const sentence = "A photo of two cats sleeping on a red sofa.";
    const tokens = model.tokenize(sentence);
    expect(tokens.length).toBeGreaterThan(5);
    expect(tokens.length).toBeLessThan(sentence.length / 2);
    expect(model.detokenize(tokens)).toBe(sentence);

    // One thread: node-llama-cpp defaults to 2 per core, which crawls on a busy 2-core machine.
    const context = await model.createContext({ contextSize: 512, threads: 1 });
    try {
      // Logits of a real forward pass are finite and not all equal.
      const sequence = context.getSequence();
      const prompt = model.tokenize("USER: Describe the image. ASSISTANT:");
      const last = prompt.length - 1;
      const results = await sequence.controlledEvaluate([...prompt.slice(0, last), [prompt[last], { generateNext: { probabilities: true } }]]);
      const probabilities = [...results[last]!.next.probabilities!.values()];
      expect(probabilities.every(Number.isFinite)).toBe(true);
      expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 3);
      expect(probabilities[0]).toBeGreaterThan(probabilities[probabilities.length - 1]); // sorted, not uniform

      // A short greedy generation runs to its token limit and is reproducible.
      const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
      const generate = async () => {
        await sequence.clearHistory();
        return completion.generateCompletion("Once upon a time", { maxTokens: 6, temperature: 0 });
      };
      const first = await generate();
      expect(model.tokenize(first).length).toBeGreaterThan(0);
      expect(await generate()).toBe(first);
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

describe("ensureLlavaGguf('tiny')", () => {
  let pair: LlavaGgufPair;
  beforeAll(async () => {
    pair = await ensureLlavaGguf("tiny", { cacheDir });
  });

  it("writes the pair and a manifest into the cache directory", () => {
    expect(pair.profile).toBe("tiny");
    expect(pair.modelPath.startsWith(path.join(cacheDir, "gguf"))).toBe(true);
    const manifest = readGgufManifest(pair);
    expect(manifest.imageTokens).toBe(576);
    expect(manifest.hasCls).toBe(true);
    expect(statSync(pair.modelPath).size).toBe(manifest.files.model.bytes);
    expect(statSync(pair.mmprojPath).size).toBe(manifest.files.mmproj.bytes);
  });

  it("reuses the cached pair and writes the same bytes from scratch", async () => {
    const mtime = statSync(pair.modelPath).mtimeMs;
    expect(await ensureLlavaGguf("tiny", { cacheDir })).toEqual(pair);
    expect(statSync(pair.modelPath).mtimeMs).toBe(mtime);

    const otherCache = mkdtempSync(path.join(os.tmpdir(), "leanvision-gguf-cache2-"));
    try {
      const again = await ensureLlavaGguf("tiny", { cacheDir: otherCache });
      expect(path.basename(path.dirname(again.modelPath))).toBe(path.basename(path.dirname(pair.modelPath)));
      expect(readFileSync(again.modelPath).equals(readFileSync(pair.modelPath))).toBe(true);
      expect(readFileSync(again.mmprojPath).equals(readFileSync(pair.mmprojPath))).toBe(true);
      // No temporary directory is left behind after a completed write.
      expect(readdirSync(path.join(otherCache, "gguf")).filter((name) => name.includes(".tmp-"))).toEqual([]);
    } finally {
      rmSync(otherCache, { recursive: true, force: true });
    }
  });

  it("never takes a directory without a manifest for a finished pair", async () => {
    const otherCache = mkdtempSync(path.join(os.tmpdir(), "leanvision-gguf-cache3-"));
    try {
      const dir = path.join(otherCache, "gguf", path.basename(path.dirname(pair.modelPath)));
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "model.gguf"), "half-written");
      const again = await ensureLlavaGguf("tiny", { cacheDir: otherCache });
      expect(again.modelPath).toBe(path.join(dir, "model.gguf"));
      expect(readFileSync(again.modelPath).equals(readFileSync(pair.modelPath))).toBe(true);
    } finally {
      rmSync(otherCache, { recursive: true, force: true });
    }
  });

  it("writes the mmproj keys and tensors clip.cpp reads for a llava CLIP encoder", async () => {
    const { meta, shape, names } = await readHeader(pair.mmprojPath);
    const shapes = GGUF_PROFILES.tiny;
    expect(meta["general.architecture"].value).toBe("clip");
    expect(meta["clip.projector_type"].value).toBe("mlp");
    expect(meta["clip.has_vision_encoder"].value).toBe(true);
    expect(meta["clip.use_gelu"].value).toBe(false); // CLIP: quick-GELU
    expect(meta["clip.vision.image_size"].value).toBe(336);
    expect(meta["clip.vision.patch_size"].value).toBe(14);
    expect(meta["clip.vision.block_count"].value).toBe(shapes.vision.towerLayers - 1);
    expect(meta["clip.vision.feature_layer"].value).toEqual([shapes.vision.towerLayers - 1]);
    expect(meta["clip.vision.image_mean"].subType).toBe(6); // FLOAT32, as clip.cpp requires
    const d = shapes.vision.nEmbd;
    expect(shape("v.class_embd")).toEqual([d]);
    expect(shape("v.patch_embd.weight")).toEqual([14, 14, 3, d]);
    expect(shape("v.position_embd.weight")).toEqual([d, 577]);
    expect(shape("v.pre_ln.weight")).toEqual([d]);
    expect(shape("v.blk.0.ffn_up.weight")).toEqual([d, shapes.vision.nFf]);
    expect(shape("v.blk.0.ffn_down.weight")).toEqual([shapes.vision.nFf, d]);
    expect(shape("mm.0.weight")).toEqual([d, shapes.vision.projectorHidden]);
    expect(shape("mm.2.weight")).toEqual([shapes.vision.projectorHidden, shapes.lm.nEmbd]);
    expect(names.filter((n) => n.endsWith(".attn_out.weight")).length).toBe(shapes.vision.towerLayers - 1);
    expect(names.some((n) => n.startsWith("v.post_ln"))).toBe(false); // llava converters drop it
  });

  it("has a LLaMA language model with the LLaMA/Vicuna tokenizer and a chat template", async () => {
    const { meta, shape } = await readHeader(pair.modelPath);
    expect(meta["general.architecture"].value).toBe("llama");
    expect(meta["tokenizer.ggml.model"].value).toBe("llama");
    expect((meta["tokenizer.ggml.tokens"].value as string[]).length).toBe(32000);
    expect(meta["tokenizer.chat_template"].value).toMatch(/USER: .*ASSISTANT:/);
    expect(shape("token_embd.weight")).toEqual([GGUF_PROFILES.tiny.lm.nEmbd, 32000]);
  });

  it("loads in node-llama-cpp and evaluates a prompt with the real tokenizer", async () => {
    await checkLanguageModel(pair);
  });
});

describe("ensureLlavaGguf('tiny-siglip')", () => {
  it("writes a SigLIP mmproj (no CLS, 729 tokens) and a Qwen2 model that node-llama-cpp runs", async () => {
    const pair = await ensureLlavaGguf("tiny-siglip", { cacheDir });
    expect(readGgufManifest(pair).imageTokens).toBe(729);
    const { meta, shape, names } = await readHeader(pair.mmprojPath);
    expect(names).not.toContain("v.class_embd");
    expect(names).not.toContain("v.pre_ln.weight");
    expect(names).toContain("v.patch_embd.bias");
    expect(meta["clip.vision.image_size"].value).toBe(384);
    expect(shape("v.position_embd.weight")).toEqual([GGUF_PROFILES["tiny-siglip"].vision.nEmbd, 729]);
    const lm = await readHeader(pair.modelPath);
    expect(lm.meta["general.architecture"].value).toBe("qwen2");
    expect(lm.meta["tokenizer.ggml.pre"].value).toBe("qwen2");
    expect(lm.names).not.toContain("output.weight"); // tied to token_embd
    await checkLanguageModel(pair);
  });
});

describe("ensureLlavaGguf('tiny-next')", () => {
  it("writes the mmproj as llama.cpp's LLaVA-1.6 conversion does: pinpoints, anyres keys, model.image_newline", async () => {
    const pair = await ensureLlavaGguf("tiny-next", { cacheDir });
    const shapes = GGUF_PROFILES["tiny-next"];
    expect(readGgufManifest(pair).imageTokens).toBe(576); // per tile
    const { meta, shape, names } = await readHeader(pair.mmprojPath);
    expect(meta["clip.vision.image_grid_pinpoints"].value).toEqual([336, 672, 672, 336, 672, 672, 1008, 336, 336, 1008]);
    expect(meta["clip.vision.image_grid_pinpoints"].subType).toBe(5); // INT32, as clip.cpp's get_arr_int reads it
    expect(meta["clip.vision.image_aspect_ratio"].value).toBe("anyres");
    expect(meta["clip.vision.mm_patch_merge_type"].value).toBe("spatial_unpad");
    expect(meta["clip.vision.image_crop_resolution"].value).toBe(224);
    expect(meta["clip.vision.image_split_resolution"].value).toBe(224);
    expect(meta["clip.vision.mm_projector_type"].value).toBe("mlp2x_gelu");
    expect(meta["clip.projector_type"].value).toBe("mlp");
    expect(shape("model.image_newline")).toEqual([shapes.lm.nEmbd]);
    expect(names).not.toContain("v.image_newline");
    expect(shape("mm.2.weight")).toEqual([shapes.vision.projectorHidden, shapes.lm.nEmbd]);
  });
});

describe("bad input", () => {
  it("names the valid profiles for an unknown one", async () => {
    const err = await ensureLlavaGguf("huge" as GgufProfileName, { cacheDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeanVisionError);
    expect((err as LeanVisionError).code).toBe("INVALID_INPUT");
    expect((err as Error).message).toMatch(/tiny, tiny-siglip, small, llava-1\.5-7b, nanollava/);
  });
});

describe("sampleImagePath", () => {
  it("points at the bundled llama.cpp test image", () => {
    const file = sampleImagePath();
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file).subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff])); // JPEG
  });
});
