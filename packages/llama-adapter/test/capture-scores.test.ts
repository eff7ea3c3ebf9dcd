// Capture with mtmd's default attention (flash attention on): VisionZip's scores are computed natively
// from the feature layer's queries and keys. Checked against the reference path (a context with flash
// attention off, whose capture copies the whole [heads x tokens x tokens] softmax, as capture did
// before): same scores to float tolerance, same selected tokens, on a CLS model (tiny, CLIP) and a
// CLS-less one (tiny-siglip).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama } from "node-llama-cpp";
import { parseReducerSpec, reduce, type VisionFeatures } from "@leanvision/core";
import { ensureLlavaGguf, sampleImagePath } from "@leanvision/testkit";
import { loadNativeBinding, type NativeBinding, type NativeVisionFeatures } from "../src/native-binding.js";
import { decodeImage } from "@leanvision/image";
import { relativeError } from "@leanvision/testkit";

let llama: Llama;
let binding: NativeBinding;
beforeAll(async () => {
  llama = await getLlama({ gpu: false });
  binding = loadNativeBinding();
});
afterAll(async () => {
  await llama?.dispose();
});

/** VisionZip's scores from a full softmax, as core ranks them: the CLS row or the column sums, summed over heads. */
function scoresFromAttention(f: NativeVisionFeatures): Float64Array {
  const n = f.numTokens;
  const heads = f.heads!;
  const out = new Float64Array(n);
  for (let h = 0; h < heads; h++) {
    for (let q = 0; q < n; q++) {
      if (f.clsIndex !== null && q !== f.clsIndex) continue;
      const row = (h * n + q) * n;
      for (let k = 0; k < n; k++) out[k] += f.attention![row + k];
    }
  }
  return out;
}


const tile = (f: NativeVisionFeatures, use: "attention" | "scores"): VisionFeatures => ({
  hidden: f.hidden,
  numTokens: f.numTokens,
  dim: f.dim,
  grid: { rows: f.gridRows, cols: f.gridCols },
  clsIndex: f.clsIndex,
  keys: f.keys,
  keyDim: f.keyDim,
  heads: f.heads,
  ...(use === "attention" ? { attention: f.attention } : { attentionScores: f.attentionScores })
});

describe.each([
  { profile: "tiny" as const, cls: true },
  { profile: "tiny-siglip" as const, cls: false }
])("$profile (CLS: $cls)", ({ profile, cls }) => {
  let fast: NativeVisionFeatures;
  let reference: NativeVisionFeatures;

  beforeAll(async () => {
    const { mmprojPath } = await ensureLlavaGguf(profile);
    const rgb = await decodeImage(sampleImagePath());
    const flashOn = binding.createVisionContext(mmprojPath, { nThreads: 1, useGpu: false });
    const flashOff = binding.createVisionContext(mmprojPath, { nThreads: 1, useGpu: false, flashAttention: false });
    try {
      // One tile each (LLaVA-1.5 mmprojs): the encode returns mtmd's tiles in order.
      [fast] = await binding.encode(flashOn, rgb.data, rgb.width, rgb.height, { capture: true });
      [reference] = await binding.encode(flashOff, rgb.data, rgb.width, rgb.height, { capture: true });
    } finally {
      binding.freeVisionContext(flashOn);
      binding.freeVisionContext(flashOff);
    }
  });

  it("flash attention on: scores and head-averaged keys, no full attention", () => {
    expect(fast.clsIndex).toBe(cls ? fast.numTokens - 1 : null);
    expect(fast.attention).toBeUndefined();
    expect(fast.attentionScores).toBeInstanceOf(Float32Array);
    expect(fast.attentionScores!.length).toBe(fast.numTokens);
    expect(fast.keys!.length).toBe(fast.numTokens * fast.keyDim!);
    expect(fast.attentionScores!.every((s) => Number.isFinite(s) && s >= 0)).toBe(true);
    // Each softmax row sums to 1: with CLS one row per head, without CLS one per head and query.
    const total = fast.attentionScores!.reduce((a, b) => a + b, 0);
    expect(total / (fast.heads! * (cls ? 1 : fast.numTokens))).toBeCloseTo(1, 4);
  });

  it("the scores equal those of the whole softmax, on the same graph (flash attention off)", () => {
    expect(reference.attention!.length).toBe(reference.heads! * reference.numTokens ** 2);
    expect(relativeError(reference.attentionScores!, scoresFromAttention(reference))).toBeLessThan(1e-5);
  });

  it("flash attention on gives the reference's scores and keys to float tolerance", () => {
    expect(fast.numTokens).toBe(reference.numTokens);
    expect(relativeError(fast.attentionScores!, scoresFromAttention(reference))).toBeLessThan(2e-3);
    expect(relativeError(fast.keys!, reference.keys!)).toBeLessThan(2e-3);
  });

  it.each(["visionzip:54+10", "visionzip:108+20", "visionzip:64+0"])("%s selects the same tokens as the whole attention did", (spec) => {
    const sources = (r: ReturnType<typeof reduce>, kinds = ["cls", "dominant", "contextual"]) =>
      r.provenance.filter((p) => kinds.includes(p.kind)).map((p) => `${p.kind}:${Array.from(p.sources).join(",")}`);
    const before = reduce(tile(reference, "attention"), parseReducerSpec(spec));
    // The same graph: the scores reproduce the whole reduction, contextual merges included.
    expect(sources(reduce(tile(reference, "scores"), parseReducerSpec(spec)))).toEqual(sources(before));
    // Flash attention on: the scores keep the same CLS and dominant tokens, and with the reference's
    // hidden states and keys the very same reduction. (Its own keys differ by ~5e-4 from flash
    // attention's f16 K/V in earlier layers, which can move a near-tied token between contextual groups.)
    const after = reduce(tile(fast, "scores"), parseReducerSpec(spec));
    expect(sources(after, ["cls", "dominant"])).toEqual(sources(before, ["cls", "dominant"]));
    const scoresOnly = { ...tile(reference, "scores"), attentionScores: fast.attentionScores };
    expect(sources(reduce(scoresOnly, parseReducerSpec(spec)))).toEqual(sources(before));
  });
});
