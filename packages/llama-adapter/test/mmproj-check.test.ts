// The mmproj check (src/mmproj.ts) in process: the layout it reads for every profile, LLaVA-1.6
// metadata accepted, NON_FINITE for a projector that produces NaN, and the native bridge's own checks
// when it is handed a layout the file contradicts. (test/mmproj-corpus.test.ts covers malformed files.)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { ensureLlavaGguf, GGUF_PROFILES, GgmlType, GgufValueType, imageTokenGrid, kv, mmprojFile, writeGguf } from "@leanvision/testkit";
import type { GgufFile } from "@leanvision/testkit";
import { VisionChatSession } from "../src/chat-session.js";
import { inspectMmproj } from "../src/mmproj.js";
import { loadNativeBinding } from "../src/native-binding.js";
import { loadVisionModel } from "../src/vision-model.js";
import { expectCode } from "./support/errors.js";

let llama: Llama;
let model: LlamaModel;
let dir: string;

beforeAll(async () => {
  llama = await getLlama({ gpu: false });
  model = await llama.loadModel({ modelPath: (await ensureLlavaGguf("tiny")).modelPath });
  dir = mkdtempSync(path.join(os.tmpdir(), "lv-mmproj-check-"));
});

afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function write(name: string, file: GgufFile): Promise<string> {
  const out = path.join(dir, name);
  await writeGguf(out, file);
  return out;
}

/** 64x48 raw RGB: smaller than every tower's image size, so always one tile. */
const SMALL_IMAGE = { width: 64, height: 48, data: new Uint8Array(64 * 48 * 3).map((_, i) => (i * 13) % 256) };
const LARGE_IMAGE = { width: 700, height: 400, data: new Uint8Array(700 * 400 * 3).map((_, i) => (i * 7) % 256) };

describe("inspectMmproj", () => {
  it.each(["tiny", "tiny-siglip", "small"] as const)("reads %s's layout as llama.cpp's llava graph runs it", async (profile) => {
    const v = GGUF_PROFILES[profile].vision;
    const grid = imageTokenGrid(v);
    expect(inspectMmproj((await ensureLlavaGguf(profile)).mmprojPath)).toEqual({
      projectorType: "mlp",
      imageSize: v.imageSize,
      patchSize: v.patchSize,
      hiddenDim: v.nEmbd,
      heads: v.nHead,
      projectionDim: GGUF_PROFILES[profile].lm.nEmbd,
      hasCls: grid.hasCls,
      gridRows: grid.side,
      gridCols: grid.side,
      layers: v.towerLayers - 1,
      // The testkit writes feature_layer = [block_count]: every layer runs, the last is captured.
      featureLayerIndex: v.towerLayers - 2,
      gridPinpoints: [],
      hasImageNewline: false,
    });
  });

  it("names what is wrong and what it should be", async () => {
    const base = mmprojFile(GGUF_PROFILES.tiny);
    const noPos = await write("no-pos.gguf", { ...base, tensors: base.tensors.filter((t) => t.name !== "v.position_embd.weight") });
    expect(() => inspectMmproj(noPos)).toThrow(/lacks the tensor v\.position_embd\.weight \[128, 577\]/);
    const patch7 = await write("patch7.gguf", { ...base, metadata: base.metadata.map(([k, val]) => [k, k === "clip.vision.patch_size" ? kv.u32(7) : val] as const) });
    expect(() => inspectMmproj(patch7)).toThrow(/v\.patch_embd\.weight is \[14, 14, 3, 128\] but should be \[7, 7, 3, 128\]/);
    await expectCode(() => inspectMmproj(patch7), "INVALID_MODEL");
  });
});

describe("LLaVA-1.6 metadata (image_grid_pinpoints, v.image_newline / model.image_newline)", () => {
  it("reads tiny-next's layout (written as llama.cpp's 1.6 conversion writes it): pinpoints, the newline", async () => {
    expect(inspectMmproj((await ensureLlavaGguf("tiny-next")).mmprojPath)).toMatchObject({
      gridPinpoints: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
      hasImageNewline: true,
      gridRows: 24,
      hasCls: true,
    });
  });

  it("loads; an image within image_size is one tile, a larger one the overview plus its pinpoint's tiles", async () => {
    const base = mmprojFile(GGUF_PROFILES.tiny);
    const file = await write("llava16.gguf", {
      metadata: [...base.metadata,
        ["clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [336, 672, 672, 336, 672, 672])],
        ["clip.vision.mm_patch_merge_type", kv.str("spatial_unpad")]],
      tensors: [...base.tensors, { name: "v.image_newline", shape: [256], type: GgmlType.F32, source: { kind: "const", value: 0.01 } }],
    });
    const vision = await loadVisionModel({ llama, model, mmprojPath: file, threads: 1 });
    try {
      expect(vision.info).toMatchObject({ gridPinpoints: [[336, 672], [672, 336], [672, 672]], hasImageNewline: true, gridRows: 24 });
      const out = await vision.encodeImage(SMALL_IMAGE, "visionzip:54+10");
      expect(out.reduced.numTokens).toBe(64);
      expect(out.embeddings.every(Number.isFinite)).toBe(true);
      // 700x400: 672x336 keeps 588x336 of it, 672x672 all of it (672x384) → 2x2 tiles + the overview.
      expect(vision.tileLayout(LARGE_IMAGE).tileGrid).toEqual({ rows: 2, cols: 2 });
      const tiled = await vision.encodeImage(LARGE_IMAGE, "visionzip:54+10");
      expect(tiled.features.tiles).toHaveLength(5);
      expect(tiled.reduced.numTokens).toBe(5 * 64);
    } finally {
      vision.dispose();
    }
  });
});

describe("non-finite projector outputs", () => {
  let nanProjector: string;

  beforeAll(async () => {
    const base = mmprojFile(GGUF_PROFILES.tiny);
    nanProjector = await write("nan-projector.gguf", {
      ...base,
      tensors: base.tensors.map((t) => (t.name === "mm.2.bias" ? { ...t, source: { kind: "const", value: Number.NaN } } : t)),
    });
  });

  it("encodeImage and encodeImageStock reject with NON_FINITE at the first bad value", async () => {
    const vision = await loadVisionModel({ llama, model, mmprojPath: nanProjector, threads: 1 });
    try {
      for (const encode of [() => vision.encodeImage(SMALL_IMAGE), () => vision.encodeImageStock(SMALL_IMAGE)]) {
        const err = await expectCode(encode(), "NON_FINITE");
        expect(err.message).toMatch(/produced NaN at token 0, dimension 0/);
      }
      await expectCode(vision.encodeImage(SMALL_IMAGE, "pool:2"), "NON_FINITE");
    } finally {
      vision.dispose();
    }
  });

  it("a chat prompt with such an image fails with NON_FINITE, not a TypeError, and nothing reaches the context", async () => {
    const vision = await loadVisionModel({ llama, model, mmprojPath: nanProjector, threads: 1 });
    const context = await model.createContext({ contextSize: 1024, threads: 1 });
    try {
      const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: "visionzip:54+10" });
      await expectCode(session.prompt("What is this?", { images: [SMALL_IMAGE], maxTokens: 2 }), "NON_FINITE");
      expect(session.sequence.nextTokenIndex).toBe(0);
    } finally {
      await context.dispose();
      vision.dispose();
    }
  });

  it("every native entry point's errors are LeanVisionErrors with their code (project, decodeEmbeddings)", async () => {
    const binding = loadNativeBinding();
    const handle = binding.createVisionContext((await ensureLlavaGguf("tiny")).mmprojPath, { nThreads: 1, useGpu: false });
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    try {
      const hidden = new Float32Array(2 * 128);
      hidden[200] = Number.POSITIVE_INFINITY;
      await expectCode(() => binding.project(handle, hidden, 2), "NON_FINITE");
      await expectCode(() => binding.project(handle, new Float32Array(3), 1), "INVALID_INPUT");
      const ctx = (context as unknown as { _ctx: object })._ctx;
      const embd = new Float32Array(256).fill(Number.NaN);
      const nonFinite = await expectCode(() => binding.decodeEmbeddings(ctx, 0, 0, embd, 1, 256, 1), "NON_FINITE");
      expect(nonFinite.message).toMatch(/decodeEmbeddings: embd has a non-finite value at row 0, column 0/);
      await expectCode(() => binding.decodeEmbeddings(ctx, 0, 0, new Float32Array(512), 1, 512, 1), "MMPROJ_MISMATCH");
      await expectCode(() => binding.decodeEmbeddings(ctx, 0, 250, new Float32Array(2560), 10, 256, 1), "CONTEXT_OVERFLOW");
    } finally {
      await context.dispose();
      binding.freeVisionContext(handle);
    }
    await expectCode(() => binding.encodeStock(handle, SMALL_IMAGE.data, 64, 48), "DISPOSED");
  });
});

describe("the native bridge on its own", () => {
  it("checks the layout it is given against the projector tensors it loads, and its arguments", async () => {
    loadNativeBinding();
    const manifestPath = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "build", "native", "manifest.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    const loaded = readFileSync("/proc/self/maps", "utf8");
    const addonPath = (a: { addon: string }) => path.resolve(path.dirname(manifestPath), a.addon); // relative to the manifest
    const entry = manifest.addons.find((a: { addon: string }) => loaded.includes(addonPath(a)));
    const addon = createRequire(import.meta.url)(addonPath(entry));
    const mmproj = (await ensureLlavaGguf("tiny")).mmprojPath;
    const layout = inspectMmproj(mmproj);
    const codeOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return `${(err as { code?: string }).code}: ${(err as Error).message}`;
      }
      return "no error";
    };
    const opts = { nThreads: 1, useGpu: false };
    expect(codeOf(() => addon.createVisionContext(mmproj, { ...layout, hiddenDim: 64 }, opts))).toMatch(/^INVALID_MODEL: .*mm\.0\.weight is \[128, 256, 1, 1\], expected \[64, 256, 1, 1\]/);
    expect(codeOf(() => addon.createVisionContext(mmproj, { ...layout, projectionDim: 512 }, opts))).toMatch(/^INVALID_MODEL: .*mm\.2\.weight/);
    expect(codeOf(() => addon.createVisionContext(mmproj, { ...layout, gridRows: 0 }, opts))).toMatch(/^INVALID_INPUT: createVisionContext: layout\.gridRows must be an integer/);
    expect(codeOf(() => addon.createVisionContext(mmproj))).toMatch(/^INVALID_INPUT: createVisionContext: expected/);
    expect(codeOf(() => addon.encode({}, new Uint8Array(3), 1, 1))).toMatch(/^INVALID_INPUT: encode: expected a vision context handle/);
    expect(codeOf(() => addon.decodeEmbeddings(1, 2, 3, 4, 5, 6, 7))).toMatch(/^INVALID_INPUT: decodeEmbeddings: the first argument must be/);
  });
});
