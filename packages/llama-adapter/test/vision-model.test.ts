// The vision stage on the synthetic "tiny" LLaVA pair (CLIP, CLS, 24x24 patches): real mtmd encode
// with capture, core reducers, native projector, typed errors.
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { GGUF_PROFILES, ensureLlavaGguf, kv, mmprojFile, sampleImagePath, writeGguf } from "@leanvision/testkit";
import sharp from "sharp";
import { decodeImage } from "@leanvision/image";
import { loadVisionModel, type LlamaVisionModel } from "../src/vision-model.js";
import { expectCode } from "./support/errors.js";

let llama: Llama;
let model: LlamaModel;
let vision: LlamaVisionModel;
let mmprojPath: string;
const image = sampleImagePath();

beforeAll(async () => {
  const pair = await ensureLlavaGguf("tiny");
  mmprojPath = pair.mmprojPath;
  llama = await getLlama({ gpu: false });
  model = await llama.loadModel({ modelPath: pair.modelPath });
  vision = await loadVisionModel({ llama, model, mmprojPath });
});

afterAll(async () => {
  vision?.dispose();
  await model?.dispose();
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe("tiny CLIP mmproj", () => {
  it("reads the mmproj's shapes", () => {
    expect(vision.info).toMatchObject({ projectorType: "mlp", imageSize: 336, patchSize: 14, hiddenDim: 128, heads: 4,
      projectionDim: 256, hasCls: true, gridRows: 24, gridCols: 24, layers: 3, featureLayerIndex: 2 });
    expect(vision.nEmbd).toBe(model.embeddingVectorSize);
  });

  it("none: the embeddings equal mtmd's own output for the same image", async () => {
    const ours = await vision.encodeImage(image, "none");
    const stock = await vision.encodeImageStock(image);
    expect(stock.numTokens).toBe(576);
    expect(ours.reduced.numTokens).toBe(576);
    expect(ours.embeddings.length).toBe(576 * 256);
    expect(maxAbsDiff(ours.embeddings, stock.embeddings)).toBeLessThan(1e-4);
    // llama.cpp's llava graph appends CLS after the 576 patches and feeds rows 1..576 to its projector.
    expect(ours.features.tiles).toHaveLength(1);
    expect(ours.features.tiles[0].numTokens).toBe(577);
    expect(ours.features.tiles[0].clsIndex).toBe(576);
    expect(ours.reduced.provenance.at(-1)).toMatchObject({ kind: "cls" });
    expect(Array.from(ours.reduced.provenance[0].sources)).toEqual([1]);
  });

  it("captures the feature layer's attention scores (the CLS row over 4 heads sums to 4) and head-averaged keys", async () => {
    const f = (await vision.encodeImage(image, "visionzip:54+10")).features.tiles[0];
    expect(f.heads).toBe(4);
    expect(f.attention).toBeUndefined(); // flash attention stays on; see capture-scores.test.ts
    expect(f.attentionScores!.length).toBe(577);
    expect(f.keyDim).toBe(32);
    expect(f.keys!.length).toBe(577 * 32);
    expect(f.attentionScores!.reduce((a, b) => a + b, 0)).toBeCloseTo(4, 4);
  });

  it("visionzip 54+10 yields exactly 64 embeddings of the model's n_embd", async () => {
    const out = await vision.encodeImage(image, { kind: "visionzip", dominant: 54, contextual: 10 });
    expect(out.reduced.numTokens).toBe(64);
    expect(out.embeddings.length).toBe(64 * model.embeddingVectorSize);
    expect(out.reduced.provenance.filter((p) => p.kind === "cls")).toHaveLength(1);
    expect(out.reduced.provenance.filter((p) => p.kind === "contextual")).toHaveLength(10);
    expect(out.embeddings.every(Number.isFinite)).toBe(true);
  });

  it("projects kept tokens exactly as mtmd's projector does (same rows, same embeddings)", async () => {
    const out = await vision.encodeImage(image, "visionzip:54+0");
    const stock = await vision.encodeImageStock(image);
    // mtmd's output row j is feature row j+1; a kept patch p > 0 must match stock row p-1.
    out.reduced.provenance.forEach((p, i) => {
      const row = p.sources[0];
      if (p.kind === "dominant" && row > 0) {
        const ours = out.embeddings.subarray(i * 256, (i + 1) * 256);
        const theirs = stock.embeddings.subarray((row - 1) * 256, row * 256);
        expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-4);
      }
    });
  });

  it("pool:2 gives a 12x12 grid of tokens", async () => {
    const out = await vision.encodeImage(image, "pool:2");
    expect(out.reduced.numTokens).toBe(144);
    expect(out.embeddings.length).toBe(144 * 256);
  });

  it("accepts a path, an encoded Buffer and raw RGB alike", async () => {
    const fromPath = await vision.encodeImage(image, "none");
    const fromBuffer = await vision.encodeImage(readFileSync(image), "none");
    expect(maxAbsDiff(fromPath.embeddings, fromBuffer.embeddings)).toBe(0);
    const raw = { data: new Uint8Array(64 * 48 * 3).map((_, i) => (i * 7) % 256), width: 64, height: 48 };
    const fromRaw = await vision.encodeImage(raw, "none");
    expect(fromRaw.width).toBe(64);
    expect(fromRaw.embeddings.length).toBe(576 * 256);
  });

  it("decodes alpha and greyscale images to plain RGB (alpha dropped, like llama.cpp's loader)", async () => {
    const rgba = await sharp(Buffer.alloc(8 * 6 * 4, 200), { raw: { width: 8, height: 6, channels: 4 } }).png().toBuffer();
    const grey = await sharp(Buffer.alloc(8 * 6, 90), { raw: { width: 8, height: 6, channels: 1 } }).png().toBuffer();
    for (const [buffer, value] of [[rgba, 200], [grey, 90]] as const) {
      const rgb = await decodeImage(buffer);
      expect({ width: rgb.width, height: rgb.height, bytes: rgb.data.length }).toEqual({ width: 8, height: 6, bytes: 8 * 6 * 3 });
      expect(rgb.data.every((v) => v === value)).toBe(true);
    }
    expect((await vision.encodeImage(rgba)).reduced.numTokens).toBe(576);
  });

  it("corrupt image → IMAGE_DECODE, and the model keeps working", async () => {
    await expectCode(vision.encodeImage(Buffer.from("definitely not an image")), "IMAGE_DECODE");
    const truncated = readFileSync(image).subarray(0, 300);
    await expectCode(vision.encodeImage(truncated), "IMAGE_DECODE");
    await expectCode(vision.encodeImage({ data: new Uint8Array(10), width: 4, height: 4 }), "INVALID_INPUT");
    await expectCode(vision.encodeImage("/nonexistent/image.png"), "INVALID_INPUT");
    expect((await vision.encodeImage(image, "none")).reduced.numTokens).toBe(576);
  });

  it("countTokens gives the number of embeddings encodeImage makes, for every reducer", async () => {
    for (const reducer of ["none", "visionzip:54+10", "visionzip:54+600", "pool:2", "pool:5", "regionpack:3", "visionzip:auto:0.5+4"]) {
      const counted = await vision.countTokens(image, reducer);
      const encoded = await vision.encodeImage(image, reducer);
      expect({ reducer, counted }).toEqual({ reducer, counted: encoded.numTokens });
      expect(encoded.embeddings.length).toBe(counted * 256);
    }
    // A contextual budget above the tokens left: one contextual token per token left, as the official code.
    expect(await vision.countTokens(image, "visionzip:570+100")).toBe(577);
    await expectCode(vision.countTokens(Buffer.from("not an image"), "pool:2"), "IMAGE_DECODE");
  });

  it("an image over the pixel limit is refused from its header (IMAGE_TOO_LARGE) by the shared decoder", async () => {
    const huge = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: "#888" } }).png().toBuffer();
    const strict = await loadVisionModel({ llama, model, mmprojPath, maxPixels: 1_000_000 });
    try {
      const err = await expectCode(strict.encodeImage(huge), "IMAGE_TOO_LARGE");
      expect(err.message).toMatch(/maxPixels/);
      await expectCode(strict.countTokens(huge, "pool:2"), "IMAGE_TOO_LARGE");
    } finally {
      strict.dispose();
    }
    expect((await vision.encodeImage(huge, "pool:2")).numTokens).toBe(144); // the default limit is 50 megapixels
  });

  it("a reducer budget over the token count is a typed error", async () => {
    const err = await expectCode(vision.encodeImage(image, { kind: "visionzip", dominant: 600, contextual: 10 }), "INVALID_OPTIONS");
    expect(err.message).toMatch(/dominant/);
  });
});

describe("loading", () => {
  it("an mmproj whose projection size differs from the model's n_embd → MMPROJ_MISMATCH", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lv-mismatch-"));
    try {
      const tiny = GGUF_PROFILES.tiny;
      const wrong = path.join(dir, "mmproj-512.gguf");
      await writeGguf(wrong, mmprojFile({ ...tiny, lm: { ...tiny.lm, nEmbd: 512 } }));
      const err = await expectCode(loadVisionModel({ llama, model, mmprojPath: wrong }), "MMPROJ_MISMATCH");
      expect(err.message).toMatch(/512.*256/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects files that are not a vision mmproj before llama.cpp reads them", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lv-bad-"));
    try {
      const notGguf = path.join(dir, "x.gguf");
      writeFileSync(notGguf, "hello");
      await expectCode(loadVisionModel({ llama, model, mmprojPath: notGguf }), "INVALID_INPUT");
      const truncated = path.join(dir, "t.gguf");
      writeFileSync(truncated, readFileSync(mmprojPath).subarray(0, 4096));
      await expectCode(loadVisionModel({ llama, model, mmprojPath: truncated }), "INVALID_MODEL");
      const lm = (await ensureLlavaGguf("tiny")).modelPath;
      const err = await expectCode(loadVisionModel({ llama, model, mmprojPath: lm }), "INVALID_INPUT");
      expect(err.message).toMatch(/not a vision mmproj/);
      await expectCode(loadVisionModel({ llama, model, mmprojPath: path.join(dir, "missing.gguf") }), "INVALID_INPUT");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a projector type other than LLaVA's mlp → UNSUPPORTED_MODEL", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lv-ldp-"));
    try {
      const file = mmprojFile(GGUF_PROFILES.tiny);
      const ldp = path.join(dir, "mmproj-ldp.gguf");
      await writeGguf(ldp, { ...file, metadata: file.metadata.map(([k, v]) => (k === "clip.projector_type" ? [k, kv.str("ldp")] as const : [k, v] as const)) });
      const err = await expectCode(loadVisionModel({ llama, model, mmprojPath: ldp }), "UNSUPPORTED_MODEL");
      expect(err.message).toMatch(/'ldp'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an unknown reducer is a typed error before anything is encoded", async () => {
    await expectCode(vision.encodeImage(image, "zipzap:3"), "INVALID_SPEC");
    await expectCode(vision.countTokens(image, { kind: "zipzap" }), "INVALID_SPEC");
  });

  it("use after dispose → DISPOSED", async () => {
    const v = await loadVisionModel({ llama, model, mmprojPath });
    v.dispose();
    v.dispose();
    await expectCode(v.encodeImage(image), "DISPOSED");
    await expectCode(v.encodeImageStock(image), "DISPOSED");
  });
});
