// withLeanVision on the tiny synthetic LLaVA: the split graphs reproduce the stock encoder, reducers
// change how many image embeddings reach the decoder, generate keeps working, dispose undoes it all.
import { AutoProcessor, LlavaForConditionalGeneration, RawImage } from "@huggingface/transformers";
import { LeanVisionError } from "@leanvision/core";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitVisionEncoder, withLeanVision, type LeanVisionLlava } from "../src/index.js";
import { caught, loadTiny, newTokens, PROMPT, testPicture, type Loaded } from "./helpers.js";

const { onnx } = onnxProto;
const IMAGE_TOKEN = 32000n;
let stock: Loaded;
let wrapped: Loaded;
let lean: LeanVisionLlava;
const picture = testPicture(320, 240, 2);
const image = new RawImage(new Uint8ClampedArray(picture.data), picture.width, picture.height, 3);

const imageTokens = (inputs: Record<string, unknown>) =>
  ((inputs.input_ids as any).tolist()[0] as bigint[]).filter((t) => t === IMAGE_TOKEN).length;

async function greedy(l: Loaded, maxNewTokens = 12) {
  const inputs = await l.processor._call(image, PROMPT);
  const out = await l.model.generate({ ...inputs, max_new_tokens: maxNewTokens, do_sample: false });
  return { inputs, tokens: newTokens(out, (inputs.input_ids as any).dims[1]) };
}

beforeAll(async () => {
  stock = await loadTiny();
  wrapped = await loadTiny();
  lean = await withLeanVision({ ...wrapped, modelPath: wrapped.dir, reducer: "none" });
});
afterAll(async () => {
  await lean?.dispose();
});

describe("splitting the vision encoder", () => {
  it("finds the feature layer (the last of the layers run), its keys and the CLS slice by graph structure", () => {
    expect(lean.split.found).toEqual({
      softmax: "/vision_tower/vision_model/encoder/layers.1/self_attn/Softmax",
      keyProjection: "/vision_tower/vision_model/encoder/layers.1/self_attn/k_proj/Add",
      clsSlice: "/Slice",
      attentionLayers: 2,
      cls: true,
      scoreKind: "cls-attention",
      precision: "float32",
      quantizedOps: [],
      levels: [] // no multi-level hidden states without a TokenPacker projector file
    });
    expect(lean.split.missing).toEqual([]);
    // The compact split: the in-graph score and head-averaged keys, not the whole attention.
    expect(lean.split.names).toMatchObject({ score: "leanvision_score", headKeys: "leanvision_keys_mean", attention: "", keys: "" });
  });

  const encoder = () => onnx.ModelProto.decode(readFileSync(path.join(stock.dir, "onnx", "vision_encoder.onnx")));
  const reencode = (m: ReturnType<typeof encoder>) => onnx.ModelProto.encode(m).finish();

  it.each([
    ["a file that is not ONNX", () => new TextEncoder().encode("not an onnx model at all"), /not a readable ONNX model/],
    ["a graph without image_features", () => readFileSync(path.join(stock.dir, "onnx", "embed_tokens.onnx")), /outputs \[inputs_embeds\], expected "image_features"/],
    [
      "fused attention",
      () => {
        const m = encoder();
        m.graph!.node!.find((n) => n.opType === "Softmax")!.opType = "MultiHeadAttention";
        return reencode(m);
      },
      /fused attention \(MultiHeadAttention/
    ],
    [
      "no CLS-dropping Slice",
      () => {
        const m = encoder();
        m.graph!.node!.find((n) => n.opType === "Slice")!.opType = "Identity";
        return reencode(m);
      },
      /found no Slice between the feature layer's attention/
    ]
  ])("rejects %s with UNSUPPORTED_MODEL saying what it found", (_, bytes, message) => {
    const err = (() => {
      try {
        splitVisionEncoder(bytes());
      } catch (e) {
        return e as LeanVisionError;
      }
    })();
    expect(err).toBeInstanceOf(LeanVisionError);
    expect(err!.code).toBe("UNSUPPORTED_MODEL");
    expect(err!.message).toMatch(message);
  });
});

describe("withLeanVision", () => {
  it("reducer none: same image features and exactly the same greedy generation as stock transformers.js", async () => {
    const s = await greedy(stock);
    const w = await lean.withReducer("none", () => greedy(wrapped));
    expect(imageTokens(w.inputs)).toBe(256);
    expect(w.tokens).toEqual(s.tokens);

    const stockFeatures = await stock.model.encode_image({ pixel_values: s.inputs.pixel_values as any });
    const leanFeatures = await lean.withReducer("none", () => wrapped.model.encode_image({ pixel_values: w.inputs.pixel_values as any }));
    expect(leanFeatures.dims).toEqual(stockFeatures.dims);
    const a = stockFeatures.data as Float32Array;
    const b = leanFeatures.data as Float32Array;
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThan(1e-5);
  });

  it("visionZip 54+10: exactly 64 image embeddings are merged and generate runs", async () => {
    const { inputs, tokens } = await lean.withReducer({ kind: "visionzip", dominant: 54, contextual: 10 }, () => greedy(wrapped, 10));
    expect(imageTokens(inputs)).toBe(64);
    expect(tokens).toHaveLength(10);

    const features = await lean.withReducer({ kind: "visionzip", dominant: 54, contextual: 10 }, () => wrapped.model.encode_image({ pixel_values: inputs.pixel_values as any }));
    expect(features.dims).toEqual([1, 64, 64]);
    const kinds = lean.lastImages[0].reduced.provenance.map((p) => p.kind);
    expect(kinds.filter((k) => k === "cls")).toHaveLength(1);
    expect(kinds.filter((k) => k === "dominant")).toHaveLength(53);
    expect(kinds.filter((k) => k === "contextual")).toHaveLength(10);
    expect(lean.lastTimings.projectMs).toBeGreaterThan(0);
  });

  it("a kept patch is projected exactly as the stock encoder projects it (the projector runs per token)", async () => {
    const inputs = await stock.processor._call(image, PROMPT);
    const stockFeatures = (await stock.model.encode_image({ pixel_values: inputs.pixel_values as any })).data as Float32Array;
    const leanFeatures = (await lean.withReducer({ kind: "visionzip", dominant: 54, contextual: 10 }, () => wrapped.model.encode_image({ pixel_values: inputs.pixel_values as any }))).data as Float32Array;
    const dim = 64;
    const provenance = lean.lastImages[0].reduced.provenance;
    let compared = 0;
    provenance.forEach((p, row) => {
      if (p.kind !== "dominant") return;
      const patch = p.sources[0] - 1; // token index -> patch index (CLS is token 0)
      for (let d = 0; d < dim; d++) expect(leanFeatures[row * dim + d]).toBeCloseTo(stockFeatures[patch * dim + d], 4);
      compared++;
    });
    expect(compared).toBe(53);
  });

  it.each([
    ["pool:stride=2", 64],
    ["regionpack:scale=2", 64],
    ["visionzip:dominant=108,contextual=20", 128]
  ])("%s: the processor expands <image> to %i tokens and generate runs", async (spec, count) => {
    const { inputs, tokens } = await lean.withReducer(spec, () => greedy(wrapped, 4));
    expect(imageTokens(inputs)).toBe(count);
    expect(tokens).toHaveLength(4);
  });

  it("adaptive VisionZip: <image> expands to the count chosen for this image", async () => {
    const { inputs, tokens } = await lean.withReducer({ kind: "visionzip-adaptive", coverage: 0.5, min: 16, max: 200, contextual: 10 }, () => greedy(wrapped, 3));
    const reduced = { ...lean.lastImages[0].reduced, chosenDominant: lean.lastImages[0].reduced.tiles[0].chosenDominant };
    expect(reduced.chosenDominant).toBeGreaterThanOrEqual(16);
    expect(reduced.chosenDominant).toBeLessThanOrEqual(200);
    expect(imageTokens(inputs)).toBe(reduced.numTokens);
    expect(reduced.numTokens).toBe(reduced.chosenDominant! + 10);
    expect(tokens).toHaveLength(3);
  });

  it("two images in one prompt: each expands to its own reduced count, in order", async () => {
    const other = testPicture(200, 300, 1);
    const second = new RawImage(new Uint8ClampedArray(other.data), other.width, other.height, 3);
    const inputs = await lean.withReducer({ kind: "visionzip", dominant: 54, contextual: 10 }, () => wrapped.processor._call([image, second], "USER: <image>\n<image>\nCompare them. ASSISTANT:"));
    expect(imageTokens(inputs)).toBe(128);
    const out = await lean.withReducer("visionzip:54+10", () => wrapped.model.generate({ ...inputs, max_new_tokens: 3, do_sample: false }));
    expect(newTokens(out, (inputs.input_ids as any).dims[1])).toHaveLength(3);
    expect(lean.lastImages).toHaveLength(2);
  });

  it("rejects a budget larger than the image with a typed error", async () => {
    const err = await lean.withReducer({ kind: "visionzip", dominant: 300, contextual: 10 }, () => caught(wrapped.processor._call(image, PROMPT)));
    expect(err).toBeInstanceOf(LeanVisionError);
    expect(err.message).toMatch(/dominant/);
  });

  it("rejects bad options with typed errors", async () => {
    const fresh = await loadTiny();
    for (const [options, code] of [
      [{ ...fresh, modelPath: undefined }, "INVALID_INPUT"],
      [{ ...fresh, modelPath: "/nonexistent/model" }, "INVALID_INPUT"],
      [{ ...wrapped, processor: fresh.processor }, "INVALID_INPUT"],
      [{ ...wrapped, modelPath: wrapped.dir, reducer: "zip:9" }, "INVALID_SPEC"],
      [{ ...wrapped, modelPath: wrapped.dir, reducer: { kind: "shrink" } }, "INVALID_SPEC"],
      [{ model: {}, processor: wrapped.processor, modelPath: wrapped.dir }, "INVALID_INPUT"]
    ] as const) {
      const err = await caught(withLeanVision(options as any));
      expect(err, JSON.stringify(options.reducer ?? options.modelPath)).toBeInstanceOf(LeanVisionError);
      expect(err.code).toBe(code);
    }
    expect((await caught(lean.withReducer("visionzip:dominant=many", async () => 0))).code).toBe("INVALID_SPEC");
  });

  it("rejects a text whose <image> count does not match the images", async () => {
    const err = await caught(wrapped.processor._call(image, "USER: no image token here ASSISTANT:"));
    expect(err).toBeInstanceOf(LeanVisionError);
    expect(err.code).toBe("INVALID_INPUT");
  });

  it("several reducers can share one loaded model; chats route to their own reducer", async () => {
    const other = await loadTiny();
    const pooled = await withLeanVision({ ...other, modelPath: other.dir, reducer: "pool:stride=2" });
    const zipped = await withLeanVision({ ...other, reducer: "visionzip:dominant=108,contextual=20" }); // modelPath only needed once
    const { TransformersVisionChat } = await import("../src/index.js");
    const a = new TransformersVisionChat({ lean: pooled });
    const b = new TransformersVisionChat({ lean: zipped });
    await b.prompt("one", { images: [picture], maxTokens: 2 });
    await a.prompt("two", { images: [picture], maxTokens: 2 });
    expect(b.lastTurn!.visualTokens).toBe(128);
    expect(a.lastTurn!.visualTokens).toBe(64);
    await zipped.dispose();
    expect(imageTokens(await other.processor._call(image, PROMPT))).toBe(64); // still hooked for `pooled`
    await pooled.dispose();
    expect(imageTokens(await other.processor._call(image, PROMPT))).toBe(256);
  });

  it("two chats over one wrapper with different reducers each get their own, even when their turns overlap", async () => {
    const { TransformersVisionChat } = await import("../src/index.js");
    const zip = new TransformersVisionChat({ lean, reducer: "visionzip:54+10" });
    const pool = new TransformersVisionChat({ lean, reducer: "pool:2" });
    await Promise.all([
      zip.prompt("one", { images: [picture], maxTokens: 2 }),
      pool.prompt("two", { images: [picture], maxTokens: 2 }),
      zip.prompt("three", { images: [picture], maxTokens: 2, reducer: "regionpack:4" })
    ]);
    expect(zip.turns.map((t) => [t.reducer, t.visualTokens])).toEqual([["visionzip:54+10", 64], ["regionpack:4", 16]]);
    expect(pool.turns.map((t) => [t.reducer, t.visualTokens])).toEqual([["pool:2", 64]]);
    expect(lean.reducer).toEqual({ kind: "none" }); // the wrapper's own default is untouched
  });

  it("splits an encoder whose weights are in external data (.onnx_data), which stock transformers.js also loads", async () => {
    // A copy of the tiny folder with the vision weights moved into vision_encoder.onnx_data.
    const dir = mkdtempSync(path.join(os.tmpdir(), "lv-extdata-"));
    try {
      cpSync(stock.dir, dir, { recursive: true });
      const m = onnx.ModelProto.decode(readFileSync(path.join(stock.dir, "onnx", "vision_encoder.onnx")));
      const chunks: Uint8Array[] = [];
      let offset = 0;
      for (const t of m.graph!.initializer!) {
        const data = t.rawData!;
        if (data.length < 1024) continue; // like exporters: shape constants stay inline
        t.externalData = [
          { key: "location", value: "vision_encoder.onnx_data" },
          { key: "offset", value: String(offset) },
          { key: "length", value: String(data.length) }
        ];
        t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        t.rawData = new Uint8Array(0);
        chunks.push(data);
        offset += data.length;
      }
      writeFileSync(path.join(dir, "onnx", "vision_encoder.onnx"), onnx.ModelProto.encode(m).finish());
      writeFileSync(path.join(dir, "onnx", "vision_encoder.onnx_data"), Buffer.concat(chunks));
      const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
      config["transformers.js_config"] = { use_external_data_format: { "vision_encoder.onnx": 1 } };
      writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));

      const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" });
      const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
      const external = { dir, model: model as any, processor: processor as any };
      const stockTokens = (await greedy(external)).tokens;
      expect(stockTokens).toEqual((await greedy(stock)).tokens);
      const l = await withLeanVision({ ...external, modelPath: dir, cacheDir: dir, reducer: "none" });
      try {
        expect((await greedy(external)).tokens).toEqual(stockTokens);
      } finally {
        await l.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("dispose puts the stock encoder and processor back", async () => {
    const other = await loadTiny();
    const temp = await withLeanVision({ ...other, modelPath: other.dir, reducer: "pool:stride=2" });
    expect(imageTokens(await other.processor._call(image, PROMPT))).toBe(64);
    await temp.dispose();
    const after = await greedy(other);
    expect(imageTokens(after.inputs)).toBe(256);
    expect(after.tokens).toEqual((await greedy(stock)).tokens);
    const err = await caught(temp.encodeImage(after.inputs.pixel_values as any));
    expect(err.code).toBe("DISPOSED");
  });
});
