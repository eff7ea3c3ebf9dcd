// TokenPacker on transformers.js, on the synthetic `tiny-tokenpacker` ONNX profile (CLIP 336/14 with 3 of 4
// layers run + LLaMA 256-d, and the TokenPacker projector that the GGUF profile of the same name converts,
// written as ONNX by scripts/convert-tokenpacker.py --onnx from the same official-format checkpoint):
// the split's multi-level hidden states, the ONNX projector against core's readable tokenPacker(), the
// scales, chat reuse, and the typed errors of projector files that do not fit.
import { AutoProcessor, LlavaForConditionalGeneration } from "@huggingface/transformers";
import { LeanVisionError, tokenPacker, type VisionFeatures } from "@leanvision/core";
import {
  CHECKPOINT_SCRIPT,
  convertTokenPacker,
  defaultCacheDir,
  ensureLlavaOnnx,
  ensureTokenPackerProjector,
  findPython,
  readProjectorStateDict,
  sampleImagePath,
  TOKENPACKER_PROFILES,
  writeTokenPackerCheckpoint,
  worstElementError
} from "@leanvision/testkit";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadImage } from "../src/image.js";
import { SPLIT_OUTPUTS, splitVisionEncoder } from "../src/instrument.js";
import { withLeanVision, type LlavaLikeModel, type LlavaLikeProcessor } from "../src/lean.js";
import { inspectOnnxProjectorFile } from "../src/projector-file.js";
import { openVisionRuntime, type TransformersVisionRuntime } from "../src/runtime.js";
import { caught, generateFrom } from "./helpers.js";

const ort = createRequire(import.meta.resolve("@huggingface/transformers"))("onnxruntime-node");
const { onnx } = onnxProto;

const THREADS = 1;
const profile = TOKENPACKER_PROFILES["tiny-tokenpacker"];
const image = sampleImagePath();
let dir: string;
let projectorPath: string;
let rt: TransformersVisionRuntime;
let tmp: string;
const runtimes: TransformersVisionRuntime[] = [];

async function open(projector: string | undefined): Promise<TransformersVisionRuntime> {
  const r = await openVisionRuntime({ modelPath: dir, projectorPath: projector, threads: THREADS });
  runtimes.push(r);
  return r;
}

beforeAll(async () => {
  ({ dir, projectorPath } = (await ensureLlavaOnnx("tiny-tokenpacker")) as { dir: string; projectorPath: string });
  rt = await open(projectorPath);
  tmp = mkdtempSync(path.join(os.tmpdir(), "leanvision-tptjs-"));
});

afterAll(async () => {
  for (const r of runtimes) await r.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The GGUF file the same conversion wrote beside the ONNX one: its tensors as core's tokenPacker() takes them. */
function stateDictOf(onnxPath: string) {
  return readProjectorStateDict(path.join(path.dirname(onnxPath), "projector.gguf"));
}

/** core's tokenPacker() on the encoded tile: patches and multi-level states without CLS (index 0 in Hugging Face order). */
function reference(tile: VisionFeatures, onnxPath: string, scale: number) {
  expect(tile.clsIndex).toBe(0);
  const { dim, multiLevelDim: m } = tile;
  return tokenPacker(
    { patches: tile.hidden.slice(dim), multiLevel: tile.multiLevel!.slice(m!), grid: tile.grid },
    stateDictOf(onnxPath),
    { scaleFactor: scale, numHeads: profile.heads }
  );
}


/**
 * The official module's forward in PyTorch (make_tokenpacker_checkpoint.py's TokenPacker: nn.Linear, nn.GELU,
 * nn.LayerNorm, nn.MultiheadAttention) on the reducer's rows, with the checkpoint's own weights.
 */
function torchForward(checkpoint: string, rows: Float32Array, numRows: number, scale: number): Float32Array {
  const input = path.join(tmp, "rows.f32");
  const output = path.join(tmp, "torch.f32");
  writeFileSync(input, rows);
  const { width: c, levels, mlpHidden, lmWidth, heads } = profile;
  const code = `
import glob, importlib.util, sys, numpy as np, torch
spec = importlib.util.spec_from_file_location("ckpt", sys.argv[1]); ckpt = importlib.util.module_from_spec(spec); spec.loader.exec_module(ckpt)
c, m, s2 = ${c}, ${levels.length * c}, ${scale * scale}
tp = ckpt.TokenPacker(c, m, c, ${mlpHidden}, ${lmWidth}, ${heads})
state = {}
for f in sorted(glob.glob(sys.argv[2] + "/*.bin")):
    state.update({k.split("mm_projector.", 1)[1]: v.float() for k, v in torch.load(f, map_location="cpu").items() if "mm_projector." in k})
tp.load_state_dict(state)
rows = torch.from_numpy(np.fromfile(sys.argv[3], dtype=np.float32).reshape(${numRows}, -1))
with torch.no_grad():
    query = tp.ln_q_1(tp.q_proj_1(rows[:, :c])).unsqueeze(0)            # [1, R, E]: one query per region
    multi = rows[:, c:].reshape(-1, s2, m).permute(1, 0, 2)             # [s2, R, m]: the region's patches
    key, value = tp.ln_k_1(tp.k_proj_1(multi)), tp.ln_v_1(tp.v_proj_1(multi))
    out = tp.mlp(tp.clip_attn(query, key, value)[0][0])
out.numpy().astype(np.float32).tofile(sys.argv[4])
`;
  const r = spawnSync(findPython(["torch"]), ["-c", code, CHECKPOINT_SCRIPT, checkpoint, input, output], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  const bytes = readFileSync(output);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<LeanVisionError> {
  const err = await caught(p);
  expect(err).toBeInstanceOf(LeanVisionError);
  expect(err.code, err.message).toBe(code);
  return err;
}

describe("tiny-tokenpacker (transformers.js)", () => {
  it("the projector file describes itself; the split gives exactly the hidden states it names", async () => {
    expect(rt.lean.projectorFile).toMatchObject({
      type: "tokenpacker", inputDim: 128, outputDim: 256, scaleFactor: 2, heads: 2, gridSize: 24,
      featureLayer: 3, multiLevelLayers: [1, 2, 2, 3], multiLevelDim: 512, rowDim: 128 + 4 * 512
    });
    expect(rt.lean.split.found).toMatchObject({ attentionLayers: 3, cls: true, levels: [1, 2, 2, 3] });

    // The same encoder with each layer's output (its second residual Add, by name) as an extra output.
    const encoder = readFileSync(path.join(dir, "onnx", "vision_encoder.onnx"));
    const model = onnx.ModelProto.decode(encoder);
    const layerOut = (l: number) => `/vision_tower/vision_model/encoder/layers.${l - 1}/Add_1_output_0`;
    for (const l of [1, 2, 3]) model.graph!.output!.push(onnx.ValueInfoProto.create({ name: layerOut(l), type: { tensorType: { elemType: 1 } } }));
    const full = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());
    const features = await ort.InferenceSession.create(splitVisionEncoder(encoder, undefined, { outputs: "compact", levels: [1, 2, 2, 3] }).features);
    const { pixel_values } = await rt.lean.processor.image_processor(await loadImage(image));
    const feeds = { pixel_values: pixel_values.ort_tensor };
    const [a, b] = [await full.run(feeds), await features.run(feeds)];
    await Promise.all([full.release(), features.release()]);
    const multi = b[SPLIT_OUTPUTS.multiLevel];
    expect(multi.dims).toEqual([1, 577, 512]);
    const c = 128;
    for (let t = 0; t < 577; t += 96) {
      const row = (multi.data as Float32Array).subarray(t * 4 * c, (t + 1) * 4 * c);
      [1, 2, 2, 3].forEach((l, i) => {
        const expected = (a[layerOut(l)].data as Float32Array).subarray(t * c, (t + 1) * c);
        expect(worstElementError(row.subarray(i * c, (i + 1) * c), expected), `token ${t}, level ${l}`).toBeLessThan(1e-5);
      });
    }

    // Through the runtime: the tile carries them, and the deepest level is the feature layer itself.
    const tile = (await rt.encodeImage(image, "tokenpacker")).features.tiles[0];
    expect(tile.multiLevelDim).toBe(512);
    expect(tile.multiLevel!.length).toBe(577 * 512);
    expect(Array.from(tile.multiLevel!.subarray(3 * c, 4 * c))).toEqual(Array.from(tile.hidden.subarray(0, c)));
    // Other reducers do not fetch them.
    expect((await rt.encodeImage(image, "visionzip:54+10")).features.tiles[0].multiLevel).toBeUndefined();
  });

  it("the ONNX projector equals core's tokenPacker() on the same rows (scale 2: 144 tokens from 24x24)", async () => {
    const out = await rt.encodeImage(image, "tokenpacker");
    expect(out.numTokens).toBe(144);
    expect(out.nEmbd).toBe(256);
    expect(out.embeddings.length).toBe(144 * 256);
    expect(out.reduced.provenance.every((p) => p.kind === "packed" && p.sources.length === 4)).toBe(true);
    expect(worstElementError(out.embeddings, reference(out.features.tiles[0], projectorPath, 2).hidden)).toBeLessThan(1e-4);
    expect(await rt.countTokens(image, "tokenpacker")).toBe(144);
    // Other reducers keep the vision encoder's own projector.
    expect((await rt.encodeImage(image, "none")).numTokens).toBe(576);
  });

  it("the ONNX projector equals the official PyTorch module on the same checkpoint", async () => {
    const checkpoint = path.join(tmp, "TokenPacker-torch-144token");
    writeTokenPackerCheckpoint(profile, checkpoint, 2);
    const file = path.join(tmp, "torch.onnx");
    expect(convertTokenPacker(profile, checkpoint, path.join(tmp, "torch.gguf"), ["--onnx", file])).toContain("torch.gguf and " + file);
    const r = await open(file);
    const out = await r.encodeImage(image, "tokenpacker");
    const expected = torchForward(checkpoint, out.reduced.hidden, out.numTokens, 2);
    expect(expected.length).toBe(144 * 256);
    expect(worstElementError(out.embeddings, expected)).toBeLessThan(1e-4);
  });

  for (const [scale, tokens] of [[3, 64], [4, 36]] as const) {
    it(`scale ${scale} gives ${tokens} tokens at 24x24, equal to tokenPacker()`, async () => {
      const file = ensureTokenPackerProjector("tiny-tokenpacker", { cacheDir: defaultCacheDir(), scale, format: "onnx" });
      const r = await open(file);
      const spec = `tokenpacker:${scale}`;
      expect(await r.countTokens(image, spec)).toBe(tokens);
      const out = await r.encodeImage(image, spec);
      expect(out.numTokens).toBe(tokens);
      expect(out.reduced.provenance.every((p) => p.sources.length === scale * scale)).toBe(true);
      expect(worstElementError(out.embeddings, reference(out.features.tiles[0], file, scale).hidden)).toBeLessThan(1e-4);
      expect((await expectCode(r.encodeImage(image, "tokenpacker:2"), "INVALID_SPEC")).message).toContain(`tokenpacker:${scale}`);
    });
  }

  it("a chat reuses the packed image on later turns, exactly as a full recompute", async () => {
    const chat = await rt.createChat({ reducer: "tokenpacker" });
    await chat.prompt("What is in this picture?", { images: [image], maxTokens: 4 });
    const t1 = chat.lastTurn!;
    expect(t1).toMatchObject({ turn: 1, reducer: "tokenpacker:2", visualTokens: 144, reusedTokens: 0 });
    const afterTurn1 = chat.tokenIds;
    expect(t1.evaluatedTokens).toBe(afterTurn1.length - 4);

    await chat.prompt("And the colours?", { maxTokens: 5 });
    const t2 = chat.lastTurn!;
    expect(t2).toMatchObject({ turn: 2, visualTokens: 0, encodeMs: 0, projectMs: 0, reusedTokens: afterTurn1.length - 1 });
    expect(t2.evaluatedTokens).toBeLessThan(20);

    // From scratch: the whole conversation so far, no cache, the image packed again.
    const all = chat.tokenIds;
    const promptIds = all.slice(0, t2.reusedTokens + t2.evaluatedTokens);
    const { pixel_values } = await rt.lean.processor.image_processor(await loadImage(image));
    const recomputed = await rt.lean.withReducer("tokenpacker", () => generateFrom(rt.lean.model, promptIds, pixel_values, 5));
    expect(recomputed).toEqual(all.slice(promptIds.length));
    await chat.dispose();
  });

  describe("projector files that do not fit are typed errors before anything is wrapped", () => {
    let model: LlavaLikeModel;
    let processor: LlavaLikeProcessor;
    beforeAll(async () => {
      model = (await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" })) as unknown as LlavaLikeModel;
      processor = (await AutoProcessor.from_pretrained(dir, { local_files_only: true })) as unknown as LlavaLikeProcessor;
    });
    const wrap = (projector: string) => withLeanVision({ model, processor, modelPath: dir, projectorPath: projector });

    it("another vision tower's width, another language model's width, a shallower feature layer", async () => {
      // The small profile's TokenPacker reads 384-wide features.
      const small = ensureTokenPackerProjector("small-tokenpacker", { cacheDir: defaultCacheDir(), format: "onnx" });
      expect((await expectCode(wrap(small), "MMPROJ_MISMATCH")).message).toMatch(/reads 384-wide encoder features .* gives 128/);

      // Right tower, another language model width.
      const wide = path.join(tmp, "TokenPacker-wide-144token");
      writeTokenPackerCheckpoint({ ...profile, lmWidth: 320, mlpHidden: 320 }, wide, 2);
      convertTokenPacker(profile, wide, path.join(tmp, "wide.gguf"), ["--onnx", path.join(tmp, "wide.onnx")]);
      expect((await expectCode(wrap(path.join(tmp, "wide.onnx")), "MMPROJ_MISMATCH")).message).toMatch(/320-wide embeddings .* 256/);

      // Patch features from hidden state 2, but the encoder runs 3 layers.
      const fits = path.join(tmp, "TokenPacker-fits-144token");
      writeTokenPackerCheckpoint(profile, fits, 2);
      convertTokenPacker({ ...profile, levels: [1, 1, 2, 2], featureLayer: 2 }, fits, path.join(tmp, "shallow.gguf"), ["--onnx", path.join(tmp, "shallow.onnx")]);
      expect((await expectCode(wrap(path.join(tmp, "shallow.onnx")), "MMPROJ_MISMATCH")).message).toMatch(/hidden state 2 .* runs 3 encoder layers/);

      // Nothing was installed: the model still wraps with the right file.
      const lean = await wrap(projectorPath);
      expect(lean.projectorFile?.path).toBe(projectorPath);
      await lean.dispose();
    });

    it("the GGUF projector file, a missing file, a plain ONNX model: INVALID_INPUT naming the converter", async () => {
      const gguf = path.join(path.dirname(projectorPath), "projector.gguf");
      expect((await expectCode(wrap(gguf), "INVALID_INPUT")).message).toContain("--onnx");
      await expectCode(wrap(path.join(tmp, "missing.onnx")), "INVALID_INPUT");
      expect((await expectCode(() => inspectOnnxProjectorFile(path.join(dir, "onnx", "embed_tokens.onnx")), "INVALID_INPUT")).message).toContain("not a LeanVision projector file");
    });

    it("tokenpacker without a TokenPacker projector is INVALID_SPEC; a second wrapper cannot swap the projector", async () => {
      const plain = await open(undefined);
      expect((await expectCode(plain.encodeImage(image, "tokenpacker"), "INVALID_SPEC")).message).toContain("projectorPath");
      await expectCode(plain.countTokens(image, "tokenpacker"), "INVALID_SPEC");
      await expectCode(plain.createChat({ reducer: "tokenpacker" }).then((c) => c.prompt("Hi", { images: [image], maxTokens: 1 })), "INVALID_SPEC");
      expect((await plain.encodeImage(image, "visionzip:54+10")).numTokens).toBe(64);
      await expectCode(withLeanVision({ model: plain.lean.model, processor: plain.lean.processor, modelPath: dir, projectorPath }), "INVALID_INPUT");
    });
  });
});
