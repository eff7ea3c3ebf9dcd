// withLeanVision and TransformersVisionChat on the SigLIP + Qwen2 models people run in transformers.js:
// the LLaVA-OneVision and nanoLLaVA layouts (testkit `tiny-onevision`, `tiny-nanollava`) in every dtype
// their repos ship for transformers.js (fp32, fp16, q4, q8). AutoProcessor is only an image processor
// there, so the adapter expands `<image>` itself; the chat template is the model's own (ChatML, from
// tokenizer_config.json).
import { AutoProcessor, AutoTokenizer, env, LlavaForConditionalGeneration, RawImage, Tensor } from "@huggingface/transformers";
import { countReduced, LeanVisionError, toReducerSpec } from "@leanvision/core";
import { ensureLlavaOnnx } from "@leanvision/testkit";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openVisionRuntime, TransformersVisionChat, withLeanVision, type LeanVisionLlava, type LlavaLikeModel, type LlavaLikeProcessor } from "../src/index.js";
import { caught, generateFrom, newTokens, testPicture } from "./helpers.js";

const IMAGE = 151646n;
const PATCHES = 729;
const PROFILES = ["tiny-onevision", "tiny-nanollava"] as const;
const DTYPES = ["fp32", "fp16", "q4", "q8"] as const;
type Profile = (typeof PROFILES)[number];
type Dtype = (typeof DTYPES)[number];

const picture = testPicture(320, 240, 2);
const image = new RawImage(new Uint8ClampedArray(picture.data), picture.width, picture.height, 3);
const imageTokens = (ids: Tensor | bigint[]) => (Array.isArray(ids) ? ids : ((ids.tolist()[0] as bigint[]))).filter((t) => t === IMAGE).length;

/** The model card's messages: OneVision's template takes content parts, nanoLLaVA's plain ChatML a string with <image>. */
function messages(profile: Profile, question: string) {
  return profile === "tiny-onevision"
    ? [{ role: "user", content: [{ type: "image" }, { type: "text", text: question }] }]
    : [
        { role: "system", content: "Answer the question." },
        { role: "user", content: `<image>\n${question}` }
      ];
}

interface Loaded {
  model: LlavaLikeModel & { dispose(): Promise<unknown> };
  processor: LlavaLikeProcessor;
  tokenizer: any;
}
async function load(dir: string, dtype: Dtype): Promise<Loaded> {
  const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype });
  const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
  const tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  return { model: model as never, processor: processor as never, tokenizer };
}

const dirs: Record<string, string> = {};
beforeAll(async () => {
  for (const p of PROFILES) dirs[p] = (await ensureLlavaOnnx(p)).dir;
});

describe.each(PROFILES.flatMap((profile) => DTYPES.map((dtype) => [profile, dtype] as const)))("%s %s", (profile, dtype) => {
  let stock: Loaded;
  let wrapped: Loaded;
  let lean: LeanVisionLlava;
  beforeAll(async () => {
    stock = await load(dirs[profile], dtype);
    wrapped = await load(dirs[profile], dtype);
    lean = await withLeanVision({ ...wrapped, modelPath: dirs[profile], reducer: "none" });
  });
  afterAll(async () => {
    await lean?.dispose();
    await Promise.all([stock?.model.dispose(), wrapped?.model.dispose()]);
  });

  it("the vision encoder is instrumented: no CLS, mean received attention, head-averaged keys, in the graph's own precision", () => {
    expect(lean.split.found).toMatchObject({ cls: false, scoreKind: "mean-received", precision: dtype === "fp16" ? "float16" : "float32" });
    expect(lean.split.found.quantizedOps).toEqual(dtype === "q4" ? ["MatMulNBits"] : dtype === "q8" ? expect.arrayContaining(["MatMulInteger"]) : []);
    expect(lean.split.missing).toEqual([]);
    expect(lean.imageToken).toBe("<image>");
  });

  it("none: the adapter expands <image> to 729 tokens and generates exactly what stock transformers.js generates from the prompt expanded by hand", async () => {
    const text = stock.tokenizer.apply_chat_template(messages(profile, "What is in the picture?"), { tokenize: false, add_generation_prompt: true }) as string;
    expect(text.split("<image>")).toHaveLength(2);
    const stockInputs = { ...stock.tokenizer(text.replace("<image>", "<image>".repeat(PATCHES))), ...(await stock.processor._call(image)) };
    const stockTokens = newTokens(await stock.model.generate({ ...stockInputs, max_new_tokens: 6, do_sample: false }), stockInputs.input_ids.dims[1]);

    // The stock processor call, one <image> in the text: the wrapper tokenizes and expands it.
    const inputs = (await lean.withReducer("none", () => (wrapped.processor as any)(image, text))) as Record<string, Tensor>;
    expect(imageTokens(inputs.input_ids)).toBe(PATCHES);
    expect(inputs.input_ids.tolist()).toEqual(stockInputs.input_ids.tolist());
    const out = await lean.withReducer("none", () => wrapped.model.generate({ ...inputs, max_new_tokens: 6, do_sample: false }));
    expect(newTokens(out, inputs.input_ids.dims[1])).toEqual(stockTokens);
    expect(lean.lastImages[0].reduced.numTokens).toBe(PATCHES);
  });

  it("visionzip:54+10 merges exactly 64 image embeddings, 54 dominant + 10 contextual and no CLS", async () => {
    const text = stock.tokenizer.apply_chat_template(messages(profile, "Describe it."), { tokenize: false, add_generation_prompt: true }) as string;
    const inputs = (await lean.withReducer("visionzip:54+10", () => (wrapped.processor as any)(image, text))) as Record<string, Tensor>;
    expect(imageTokens(inputs.input_ids)).toBe(64);
    const features = await lean.withReducer("visionzip:54+10", () => wrapped.model.encode_image({ pixel_values: inputs.pixel_values }));
    expect(features.dims).toEqual([1, 64, 64]);
    const kinds = lean.lastImages[0].reduced.provenance.map((p) => p.kind);
    expect(kinds.filter((k) => k === "cls")).toHaveLength(0);
    expect(kinds.filter((k) => k === "dominant")).toHaveLength(54);
    expect(kinds.filter((k) => k === "contextual")).toHaveLength(10);
    expect(lean.lastImages[0].features.tiles[0]).toMatchObject({ clsIndex: null, grid: { rows: 27, cols: 27 }, numTokens: PATCHES, keyDim: 16 });
    const out = await lean.withReducer("visionzip:54+10", () => wrapped.model.generate({ ...inputs, max_new_tokens: 4, do_sample: false }));
    expect(newTokens(out, inputs.input_ids.dims[1])).toHaveLength(4);

    if (dtype === "fp32") {
      // The projector runs per token: a kept patch is projected exactly as the stock encoder projects it.
      const full = (await stock.model.encode_image({ pixel_values: inputs.pixel_values })).data as Float32Array;
      const kept = features.data as Float32Array;
      lean.lastImages[0].reduced.provenance.forEach((p, row) => {
        if (p.kind !== "dominant") return;
        for (let d = 0; d < 64; d++) expect(kept[row * 64 + d]).toBeCloseTo(full[p.sources[0] * 64 + d], 4);
      });
    }
  });

  it("chat: the model's ChatML template, turn 2 reuses the image from past_key_values and equals a full recompute", async () => {
    const chat = new TransformersVisionChat({ lean, reducer: "visionzip:54+10" });
    await chat.prompt("What is in the picture?", { images: [picture], maxTokens: 4 });
    const t1 = chat.lastTurn!;
    expect(t1.visualTokens).toBe(64);
    expect(imageTokens(chat.tokenIds)).toBe(64);
    const rendered = lean.tokenizer.decode(chat.tokenIds.slice(0, t1.evaluatedTokens), { skip_special_tokens: false }) as string;
    expect(rendered).toContain("<|im_start|>user");
    expect(rendered.endsWith("<|im_start|>assistant\n")).toBe(true);

    const reply2 = await chat.prompt("And the colours?", { maxTokens: 5 });
    const t2 = chat.lastTurn!;
    expect(t2.visualTokens).toBe(0);
    expect(t2.encodeMs + t2.reduceMs + t2.projectMs).toBe(0);
    expect(t2.reusedTokens).toBe(t1.evaluatedTokens + 4 - 1);
    expect(t2.evaluatedTokens).toBeLessThan(20);
    const between = lean.tokenizer.decode(chat.tokenIds.slice(t1.evaluatedTokens + 4 - 1, t2.reusedTokens + t2.evaluatedTokens), { skip_special_tokens: false }) as string;
    expect(between).toMatch(/<\|im_start\|>user[ \n]+\n?And the colours\?<\|im_end\|>\n<\|im_start\|>assistant\n$/);

    // From scratch: the whole conversation's tokens, the image encoded again with the same reducer, no cache.
    const all = chat.tokenIds;
    const promptIds = all.slice(0, t2.reusedTokens + t2.evaluatedTokens);
    const { pixel_values } = await wrapped.processor.image_processor(image);
    const recomputed = await lean.withReducer("visionzip:54+10", () => generateFrom(wrapped.model, promptIds, pixel_values, 5));
    expect(recomputed).toEqual(all.slice(promptIds.length));
    expect(lean.tokenizer.decode(recomputed, { skip_special_tokens: true }).trim()).toBe(reply2);
  });

  it("chat with none generates what stock transformers.js generates from the same ChatML prompt", async () => {
    const chat = new TransformersVisionChat({ lean, reducer: "none" });
    await chat.prompt("What is in the picture?", { images: [image], maxTokens: 5 });
    const promptLength = chat.lastTurn!.evaluatedTokens;
    const ids = chat.tokenIds;
    expect(imageTokens(ids)).toBe(PATCHES);
    const { pixel_values } = await stock.processor._call(image);
    expect(await generateFrom(stock.model, ids.slice(0, promptLength), pixel_values, 5)).toEqual(ids.slice(promptLength));
  });

  it.each(["pool:2", "regionpack:3", "visionzip:auto:0.9+10:32-160", "visionzip:108+20"])("%s: <image> expands to the reduced count and the chat runs", async (spec) => {
    const chat = new TransformersVisionChat({ lean, reducer: spec });
    await chat.prompt("Describe it.", { images: [image], maxTokens: 2 });
    const turn = chat.lastTurn!;
    const reduced = lean.lastImages[0].reduced;
    expect(turn.visualTokens).toBe(reduced.numTokens);
    expect(imageTokens(chat.tokenIds)).toBe(reduced.numTokens);
    const counted = countReduced([{ numTokens: PATCHES, grid: { rows: 27, cols: 27 }, clsIndex: null }], chat.reducer);
    if (spec.includes("auto")) {
      expect(counted).toBeNull();
      const chosen = reduced.tiles[0].chosenDominant!;
      expect(chosen).toBeGreaterThanOrEqual(32);
      expect(chosen).toBeLessThanOrEqual(160);
      expect(reduced.numTokens).toBe(chosen + 10);
    } else {
      expect(reduced.numTokens).toBe(counted);
    }
  });
});

describe("a vision encoder that cannot give what a reducer needs", () => {
  it("UNSUPPORTED_MODEL names the missing tensor and the reducers that still work (from core's registry)", async () => {
    const loaded = await load(dirs["tiny-nanollava"], "fp32");
    const lean = await withLeanVision({ ...loaded, modelPath: dirs["tiny-nanollava"], reducer: "none" });
    try {
      // As if the split had found the keys packed in a fused op (instrument.test.ts covers the graphs themselves).
      lean.split.missing.push({ tensor: "keys", reason: "the keys are packed inside a fused op", consequence: "contextual tokens need them" });
      const err = await caught(lean.withReducer("visionzip:54+10", () => (loaded.processor as any)(image, "<image>\nHi")));
      expect(err).toBeInstanceOf(LeanVisionError);
      expect(err.code).toBe("UNSUPPORTED_MODEL");
      expect(err.message).toMatch(/visionzip:54\+10 needs the feature layer's keys/);
      expect(err.message).toMatch(/Reducers that work with this model: none, visionzip, visionzip-adaptive, pool, regionpack \(visionzip only with parameters that need no keys\)/);
      // Reducers that need only the hidden states (and VisionZip without contextual tokens) still run.
      for (const spec of ["pool:2", "regionpack:3", "visionzip:64+0"]) {
        const inputs = (await lean.withReducer(spec, () => (loaded.processor as any)(image, "<image>\nHi"))) as Record<string, Tensor>;
        const counted = countReduced([{ numTokens: PATCHES, grid: { rows: 27, cols: 27 }, clsIndex: null }], toReducerSpec(spec));
        expect(imageTokens(inputs.input_ids), spec).toBe(counted);
      }
      lean.split.missing.push({ tensor: "attention", reason: "the softmax is fused", consequence: "VisionZip needs it" });
      const both = await caught(lean.withReducer("visionzip:64+0", () => (loaded.processor as any)(image, "<image>\nHi")));
      expect(both.message).toMatch(/needs the feature layer's attention, .*Reducers that work with this model: none, pool, regionpack\./);
      // A default reducer the model cannot run fails when wrapping, not at the first image.
      const again = await caught(withLeanVision({ ...loaded, reducer: "visionzip:auto:0.9+10:32-160" }));
      expect(again.code).toBe("UNSUPPORTED_MODEL");
    } finally {
      lean.split.missing.length = 0;
      await lean.dispose();
      await loaded.model.dispose();
    }
  });
});

describe("openVisionRuntime on the SigLIP layouts", () => {
  it("rejects a bad thread count", async () => {
    expect((await caught(openVisionRuntime({ modelPath: dirs["tiny-onevision"], threads: 0 }))).code).toBe("INVALID_INPUT");
  });

  it.each([
    ["tiny-onevision", "q4"],
    ["tiny-nanollava", { embed_tokens: "fp16", vision_encoder: "fp16", decoder_model_merged: "q4" }] // the nanoLLaVA model card's mix
  ] as const)("%s with dtype %j: counts, encodes and chats through the runtime contract", async (profile, dtype) => {
    const rt = await openVisionRuntime({ modelPath: dirs[profile], dtype: dtype as never, threads: 1 });
    try {
      expect(rt.description).toMatchObject({ dtype, threads: 1 });
      expect(rt.lean.split.found.cls).toBe(false);
      expect(await rt.countTokens(picture, "visionzip:54+10")).toBe(64);
      expect(await rt.countTokens(picture, "none")).toBe(PATCHES);
      expect(await rt.countTokens(picture, "pool:2")).toBe(196);
      const encoded = await rt.encodeImage(picture, "visionzip:54+10");
      expect(encoded).toMatchObject({ numTokens: 64, nEmbd: 64, width: 320, height: 240 });
      expect(encoded.embeddings).toHaveLength(64 * 64);
      expect(rt.countTextTokens("Hello world")).toBe(2);
      const chat = await rt.createChat({ reducer: "visionzip:54+10", systemPrompt: "Be brief." });
      await chat.prompt("What is it?", { images: [picture], maxTokens: 3 });
      await chat.prompt("Sure?", { maxTokens: 2 });
      expect(chat.turns.map((t) => t.visualTokens)).toEqual([64, 0]);
      expect(chat.lastTurn!.reusedTokens).toBeGreaterThan(64);
    } finally {
      await rt.dispose();
    }
  });
});

describe("loading by repo id", () => {
  it("withLeanVision finds the repo's files where transformers.js keeps them (env.localModelPath / env.cacheDir)", async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "lv-models-"));
    const saved = { localModelPath: env.localModelPath, cacheDir: env.cacheDir };
    try {
      mkdirSync(path.join(root, "Xenova"));
      symlinkSync(dirs["tiny-nanollava"], path.join(root, "Xenova", "nanoLLaVA"));
      env.localModelPath = root;
      const repo = "Xenova/nanoLLaVA";
      const model = await LlavaForConditionalGeneration.from_pretrained(repo, { local_files_only: true, dtype: { embed_tokens: "fp16", vision_encoder: "fp16", decoder_model_merged: "q4" } });
      const processor = await AutoProcessor.from_pretrained(repo, { local_files_only: true });
      const tokenizer = await AutoTokenizer.from_pretrained(repo, { local_files_only: true });
      const lean = await withLeanVision({ model, processor, tokenizer, modelPath: repo, reducer: "visionzip:54+10" });
      try {
        expect(lean.split.found.precision).toBe("float16");
        const text = tokenizer.apply_chat_template([{ role: "user", content: "<image>\nWhat is this?" }], { tokenize: false, add_generation_prompt: true }) as string;
        const inputs = (await (processor as any)(image, text)) as Record<string, Tensor>;
        expect(imageTokens(inputs.input_ids)).toBe(64);
        const out = await model.generate({ ...inputs, max_new_tokens: 2, do_sample: false });
        expect(newTokens(out, inputs.input_ids.dims[1])).toHaveLength(2);
      } finally {
        await lean.dispose();
        await model.dispose();
      }
      env.localModelPath = path.join(root, "elsewhere");
      const err = await caught(withLeanVision({ ...(await load(dirs["tiny-nanollava"], "fp32")), modelPath: repo }));
      expect(err.code).toBe("INVALID_INPUT");
      expect(err.message).toMatch(/no vision_encoder\.onnx at .*elsewhere\/Xenova\/nanoLLaVA\/onnx\/vision_encoder\.onnx/);
    } finally {
      Object.assign(env, saved);
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("the chat template", () => {
  it("falls back to the repo's chat_template.json (llava-hf OneVision ships one) and says so when there is none", async () => {
    for (const profile of PROFILES) {
      const loaded = await load(dirs[profile], "fp32");
      loaded.tokenizer.chat_template = null; // as a tokenizer_config.json without one
      const lean = await withLeanVision({ ...loaded, modelPath: dirs[profile], reducer: "visionzip:54+10" });
      try {
        const chat = new TransformersVisionChat({ lean });
        if (profile === "tiny-onevision") {
          await chat.prompt("What is it?", { images: [image], maxTokens: 1 });
          const prompt = lean.tokenizer.decode(chat.tokenIds.slice(0, chat.lastTurn!.evaluatedTokens), { skip_special_tokens: false }) as string;
          expect(prompt.replace(/(<image>)+/, "<image>")).toBe("<|im_start|>user <image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n");
        } else {
          const err = await caught(chat.prompt("What is it?", { images: [image], maxTokens: 1 }));
          expect(err.code).toBe("UNSUPPORTED_MODEL");
          expect(err.message).toMatch(/no chat template/);
        }
      } finally {
        await lean.dispose();
        await loaded.model.dispose();
      }
    }
  });
});
