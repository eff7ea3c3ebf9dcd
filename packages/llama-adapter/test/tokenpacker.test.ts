// TokenPacker in the llama adapter, on the synthetic `tiny-tokenpacker` profile (the tiny pair plus a
// TokenPacker projector file made from an official-format checkpoint by scripts/convert-tokenpacker.py):
// multi-level capture in mtmd's graph, the `tokenpacker` reducer, the projector in ggml checked
// against core's readable tokenPacker(), projector overrides and their typed errors, chat reuse.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { tokenPacker, type VisionFeatures } from "@leanvision/core";
import {
  CONVERTER_SCRIPT,
  convertTokenPacker,
  defaultCacheDir,
  ensureLlavaGguf,
  findPython,
  GGUF_PROFILES,
  mmprojFile,
  writeGguf,
  ensureTokenPackerProjector,
  readProjectorStateDict,
  sampleImagePath,
  TOKENPACKER_PROFILES,
  writeTokenPackerCheckpoint,
  worstElementError
} from "@leanvision/testkit";
import { VisionChatSession } from "../src/chat-session.js";
import { isPlaceholderToken } from "../src/injection.js";
import { loadVisionModel, type LlamaVisionModel } from "../src/vision-model.js";
import { expectCode } from "./support/errors.js";

const THREADS = 1;
const profile = TOKENPACKER_PROFILES["tiny-tokenpacker"];
const image = sampleImagePath();
let llama: Llama;
let model: LlamaModel;
let pair: Awaited<ReturnType<typeof ensureLlavaGguf>>;
let tmp: string;
const models: LlamaVisionModel[] = [];

async function load(projectorPath?: string): Promise<LlamaVisionModel> {
  const v = await loadVisionModel({ llama, model, mmprojPath: pair.mmprojPath, projectorPath, threads: THREADS });
  models.push(v);
  return v;
}

beforeAll(async () => {
  pair = await ensureLlavaGguf("tiny-tokenpacker");
  llama = await getLlama({ gpu: false });
  model = await llama.loadModel({ modelPath: pair.modelPath });
  tmp = mkdtempSync(path.join(os.tmpdir(), "leanvision-tp-"));
});

afterAll(async () => {
  for (const v of models) v.dispose();
  await model?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A synthetic official-format checkpoint that fits the tiny pair (written once per run). */
let fits: string | undefined;
function fitsCheckpoint(): string {
  if (!fits) {
    fits = path.join(tmp, "TokenPacker-fits-144token");
    writeTokenPackerCheckpoint(profile, fits, 2);
  }
  return fits;
}

/** core's tokenPacker() on the captured tile: patches and multi-level states without CLS. */
function reference(tile: VisionFeatures, projectorPath: string, scale: number) {
  const p = tile.grid.rows * tile.grid.cols;
  expect(tile.clsIndex).toBe(p); // llama.cpp's llava graph appends CLS after the patches
  return tokenPacker(
    { patches: tile.hidden.slice(0, p * tile.dim), multiLevel: tile.multiLevel!.slice(0, p * tile.multiLevelDim!), grid: tile.grid },
    readProjectorStateDict(projectorPath),
    { scaleFactor: scale, numHeads: profile.heads }
  );
}


describe("tiny-tokenpacker", () => {
  it("captures the multi-level hidden states the projector file names", async () => {
    const vision = await load(pair.projectorPath);
    expect(vision.projectorFile).toMatchObject({ type: "tokenpacker", scaleFactor: 2, heads: 2, multiLevelLayers: [1, 2, 2, 3], featureLayer: 3 });
    const tile = (await vision.encodeImage(image, "tokenpacker")).features.tiles[0];
    const c = tile.dim;
    expect(tile.multiLevelDim).toBe(4 * c);
    expect(tile.multiLevel!.length).toBe(577 * 4 * c);
    for (const t of [0, 300, 576]) {
      const row = tile.multiLevel!.subarray(t * 4 * c, (t + 1) * 4 * c);
      // Levels 2 and 2 are the same layer; level 3 is the feature layer itself (hidden).
      expect(Array.from(row.subarray(c, 2 * c))).toEqual(Array.from(row.subarray(2 * c, 3 * c)));
      expect(Array.from(row.subarray(3 * c))).toEqual(Array.from(tile.hidden.subarray(t * c, (t + 1) * c)));
      expect(Array.from(row.subarray(0, c))).not.toEqual(Array.from(row.subarray(c, 2 * c)));
    }
  });

  it("the native projector equals core's tokenPacker() (f16 file as converted; f32 file to 1e-4)", async () => {
    const f16 = await load(pair.projectorPath);
    const out = await f16.encodeImage(image, "tokenpacker");
    expect(out.numTokens).toBe(144);
    expect(out.embeddings.length).toBe(144 * model.embeddingVectorSize);
    expect(out.reduced.provenance.every((p) => p.kind === "packed" && p.sources.length === 4)).toBe(true);
    const expected = reference(out.features.tiles[0], pair.projectorPath!, 2);
    // ggml rounds activations to f16 for f16 weights.
    expect(worstElementError(out.embeddings, expected.hidden)).toBeLessThan(2e-2);

    const f32Path = ensureTokenPackerProjector("tiny-tokenpacker", { cacheDir: defaultCacheDir(), outtype: "f32" });
    const f32 = await load(f32Path);
    const exact = await f32.encodeImage(image, "tokenpacker");
    expect(worstElementError(exact.embeddings, reference(exact.features.tiles[0], f32Path, 2).hidden)).toBeLessThan(1e-4);
    expect(await f32.countTokens(image, "tokenpacker")).toBe(144);
  });

  for (const [scale, tokens] of [[3, 64], [4, 36]] as const) {
    it(`scale ${scale} gives ${tokens} tokens at 24x24, equal to tokenPacker()`, async () => {
      const file = ensureTokenPackerProjector("tiny-tokenpacker", { cacheDir: defaultCacheDir(), scale, outtype: "f32" });
      const vision = await load(file);
      const spec = `tokenpacker:${scale}`;
      expect(await vision.countTokens(image, spec)).toBe(tokens);
      const out = await vision.encodeImage(image, spec);
      expect(out.numTokens).toBe(tokens);
      expect(worstElementError(out.embeddings, reference(out.features.tiles[0], file, scale).hidden)).toBeLessThan(1e-4);
      await expectCode(vision.encodeImage(image, "tokenpacker:2"), "INVALID_SPEC");
    });
  }

  it("other reducers keep the mmproj's projector; tokenpacker without a TokenPacker file is a typed error", async () => {
    const plain = await load();
    const withFile = await load(pair.projectorPath);
    const a = await plain.encodeImage(image, "visionzip:54+10");
    const b = await withFile.encodeImage(image, "visionzip:54+10");
    expect(Array.from(b.embeddings)).toEqual(Array.from(a.embeddings));
    expect((await withFile.encodeImage(image, "none")).numTokens).toBe(576);
    expect((await expectCode(plain.encodeImage(image, "tokenpacker"), "INVALID_SPEC")).message).toContain("projectorPath");
    await expectCode(plain.countTokens(image, "tokenpacker"), "INVALID_SPEC");
  });

  it("a projector file of the wrong width, grid depth or kind is a typed error on load", async () => {
    // Another tower's width (the small profile's TokenPacker reads 384-wide features).
    const small = ensureTokenPackerProjector("small-tokenpacker", { cacheDir: defaultCacheDir() });
    expect((await expectCode(load(small), "MMPROJ_MISMATCH")).message).toMatch(/reads 384-wide encoder features .* gives 128/);

    // Right tower, another language model width.
    const wide = path.join(tmp, "TokenPacker-wide-144token");
    writeTokenPackerCheckpoint({ ...profile, lmWidth: 320, mlpHidden: 320 }, wide, 2);
    convertTokenPacker(profile, wide, path.join(tmp, "wide.gguf"));
    expect((await expectCode(load(path.join(tmp, "wide.gguf")), "MMPROJ_MISMATCH")).message).toMatch(/320-wide embeddings .* 256/);

    // Patch features from a shallower hidden state than the mmproj's graph stops at.
    convertTokenPacker({ ...profile, levels: [1, 1, 2, 2], featureLayer: 2 }, fitsCheckpoint(), path.join(tmp, "shallow.gguf"));
    expect((await expectCode(load(path.join(tmp, "shallow.gguf")), "MMPROJ_MISMATCH")).message).toContain("hidden state 2");

    // Not a projector file at all.
    expect((await expectCode(load(pair.mmprojPath), "INVALID_INPUT")).message).toContain("mmproj");
    await expectCode(load(path.join(tmp, "missing.gguf")), "INVALID_INPUT");
  });

  it("an mmproj that stops a layer short (LLaVA-1.5's, no feature_layer) is refused, and the converter's copy fixes it", async () => {
    // As llama.cpp's legacy converter writes LLaVA-1.5's mmproj: no clip.vision.feature_layer, so the
    // llava graph runs block_count - 1 layers (hidden state 2 of the tiny tower's 3 blocks).
    const file = mmprojFile(GGUF_PROFILES.tiny);
    const stock = path.join(tmp, "mmproj-stock.gguf");
    await writeGguf(stock, { ...file, metadata: file.metadata.filter(([key]) => key !== "clip.vision.feature_layer") });
    const short = loadVisionModel({ llama, model, mmprojPath: stock, projectorPath: pair.projectorPath, threads: THREADS });
    expect((await expectCode(short, "MMPROJ_MISMATCH")).message).toMatch(/hidden state 3 .* stops at hidden state 2/);

    const fixed = path.join(tmp, "mmproj-fixed.gguf");
    const r = spawnSync(findPython(["numpy"]), [CONVERTER_SCRIPT, fitsCheckpoint(), "-o", path.join(tmp, "again.gguf"),
      "--heads", "2", "--levels", "1,2,2,3", "--feature-layer", "3", "--mmproj", stock, "--mmproj-out", fixed], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("running up to hidden state 3");
    const a = await (await load(pair.projectorPath)).encodeImage(image, "tokenpacker");
    const v = await loadVisionModel({ llama, model, mmprojPath: fixed, projectorPath: pair.projectorPath, threads: THREADS });
    models.push(v);
    const b = await v.encodeImage(image, "tokenpacker");
    expect(Array.from(b.embeddings)).toEqual(Array.from(a.embeddings));
  });

  it("an mlp projector file replaces the mmproj's projector for every reducer", async () => {
    const dir = path.join(tmp, "llava-mlp-finetuned");
    writeTokenPackerCheckpoint({ ...profile, mlpHidden: 192 }, dir, 2, ["--projector", "mlp", "--dtype", "float32"]);
    const file = path.join(tmp, "mlp.gguf");
    expect(convertTokenPacker(profile, dir, file)).toContain("mlp: 128 -> 192 -> GELU -> 256");
    const vision = await load(file);
    expect(vision.projectorFile).toMatchObject({ type: "mlp", inputDim: 128, outputDim: 256, hidden: 192 });
    const out = await vision.encodeImage(image, "visionzip:54+10");
    // mm.0 -> GELU (ggml's tanh form, as llama.cpp's llava graph) -> mm.2 on the reduced rows.
    const w = readProjectorStateDict(file);
    const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(0.7978845608 * (x + 0.044715 * x * x * x)));
    const rows = out.reduced.numTokens;
    const expected = new Float32Array(rows * 256);
    for (let r = 0; r < rows; r++) {
      const x = out.reduced.hidden.subarray(r * 128, (r + 1) * 128);
      const h = new Float64Array(192);
      for (let j = 0; j < 192; j++) {
        let s = w["mm.0.bias"].data[j];
        for (let i = 0; i < 128; i++) s += w["mm.0.weight"].data[j * 128 + i] * x[i];
        h[j] = gelu(s);
      }
      for (let o = 0; o < 256; o++) {
        let s = w["mm.2.bias"].data[o];
        for (let j = 0; j < 192; j++) s += w["mm.2.weight"].data[o * 192 + j] * h[j];
        expected[r * 256 + o] = s;
      }
    }
    expect(worstElementError(out.embeddings, expected)).toBeLessThan(5e-3);
    await expectCode(vision.encodeImage(image, "tokenpacker"), "INVALID_SPEC");
  });

  it("a chat with tokenpacker prefills 144 embeddings and reuses them on the next turn", async () => {
    const vision = await load(pair.projectorPath);
    const context = await model.createContext({ contextSize: 1024, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: "tokenpacker" });
    try {
      await session.prompt("What is in this picture?", { images: [image], maxTokens: 4 });
      expect(session.lastTurn).toMatchObject({ turn: 1, reducer: "tokenpacker:2", visualTokens: 144, injectedTokens: 144, reusedTokens: 0 });
      const placeholders = session.sequence.contextTokens.filter(isPlaceholderToken);
      expect(placeholders).toHaveLength(144);
      const imageEnd = session.sequence.contextTokens.lastIndexOf(placeholders.at(-1)!) + 1;
      await session.prompt("And the colours?", { maxTokens: 4 });
      const turn2 = session.lastTurn!;
      expect(turn2).toMatchObject({ turn: 2, visualTokens: 0, injectedTokens: 0 });
      expect(turn2.reusedTokens).toBeGreaterThanOrEqual(imageEnd);
      expect(session.sequence.contextTokens.filter(isPlaceholderToken)).toEqual(placeholders);
    } finally {
      session.dispose();
      await context.dispose();
    }
  });
});
