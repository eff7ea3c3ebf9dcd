// The WebAssembly SIMD kernels (float32, four lanes) against the plain float64 loops.
import { afterEach, describe, expect, it } from "vitest";
import { poolTokens, reduce, regionPack, visionZip, visionZipAdaptive, type ReducedTokens, type VisionFeatures } from "../src/index.js";
import { setSimdEnabled, simd } from "../src/simd.js";
import { expectClose, expectError, gridFeatures, syntheticFeatures } from "./helpers.js";

/** CLS last (llama.cpp order) plus a rows x cols grid, softmax attention, random hidden and 16-d keys. */
const features = (rows: number, cols: number, dim: number, seed: number) => syntheticFeatures({ rows, cols, dim }, seed);

function both(run: () => ReducedTokens): [ReducedTokens, ReducedTokens] {
  setSimdEnabled(true);
  const fast = run();
  setSimdEnabled(false);
  const plain = run();
  setSimdEnabled(true);
  return [fast, plain];
}

afterEach(() => setSimdEnabled(true));

describe("SIMD kernels", () => {
  it("run in this engine (so the tests below compare two different paths)", () => {
    expect(simd()).not.toBeNull();
    setSimdEnabled(false);
    expect(simd()).toBeNull();
  });

  it.each([
    ["visionZip 20+6", (f: VisionFeatures) => visionZip(f, { dominant: 20, contextual: 6 })],
    ["visionZip 9+30", (f: VisionFeatures) => visionZip(f, { dominant: 9, contextual: 30 })],
    ["visionZipAdaptive", (f: VisionFeatures) => visionZipAdaptive(f, { coverage: 0.6, min: 4, max: 30, contextual: 5 })],
    ["poolTokens 2", (f: VisionFeatures) => poolTokens(f, { stride: 2 })],
    ["poolTokens 3 (partial edge windows)", (f: VisionFeatures) => poolTokens(f, { stride: 3 })],
    ["poolTokens 5", (f: VisionFeatures) => poolTokens(f, { stride: 5 })],
    ["regionPack 2", (f: VisionFeatures) => regionPack(f, { scale: 2 })]
  ])("%s gives the plain loops' tokens and provenance", (_, reducer) => {
    for (const [rows, cols, dim, seed] of [[8, 10, 64, 1], [6, 8, 1024, 2], [6, 6, 12, 3]]) {
      const f = features(rows, cols, dim, seed);
      const [fast, plain] = both(() => reducer(f));
      expect(fast.provenance).toEqual(plain.provenance);
      expect(fast.numTokens).toBe(plain.numTokens);
      expectClose(fast.hidden, plain.hidden, 1e-5);
      expect(fast.hidden).not.toBe(plain.hidden);
    }
  });

  it.each([1, 2, 3, 6])("regionPack %i (any scale) gives the plain loops' tokens", (scale) => {
    for (const [dim, seed] of [[64, 11], [12, 12], [256, 13]]) {
      const f = features(6, 6, dim, seed);
      const [fast, plain] = both(() => regionPack(f, { scale }));
      expect(fast.provenance).toEqual(plain.provenance);
      expectClose(fast.hidden, plain.hidden, 1e-5);
    }
  });

  it("reduce none checks the passed-through patches (SIMD) and copies them exactly", () => {
    const f = features(6, 6, 64, 14);
    const [fast, plain] = both(() => reduce(f, { kind: "none" }));
    expect(fast).toEqual(plain);
    f.hidden[7 * 64 + 1] = NaN;
    expect(expectError(() => reduce(f, { kind: "none" }), "NON_FINITE")).toContain("hidden holds NaN at token 7, dim 1");
  });

  it("results do not alias the kernels' memory (a later call leaves them alone)", () => {
    const f = features(8, 8, 64, 4);
    const first = regionPack(f, { scale: 2 });
    const copy = first.hidden.slice();
    poolTokens(features(8, 8, 64, 5), { stride: 2 });
    visionZip(features(8, 8, 64, 6), { dominant: 10, contextual: 4 });
    expect(first.hidden).toEqual(copy);
  });

  it("report NaN and Infinity in the hidden states like the plain loops", () => {
    const f = features(8, 8, 64, 7);
    f.hidden[9 * 64 + 5] = NaN;
    expect(expectError(() => poolTokens(f, { stride: 2 }), "NON_FINITE")).toContain("hidden holds NaN at token 9, dim 5");
    expect(expectError(() => regionPack(f, { scale: 2 }), "NON_FINITE")).toContain("hidden holds NaN at token 9, dim 5");
    f.hidden[9 * 64 + 5] = 0;
    f.hidden[63 * 64 + 63] = -Infinity; // the last value of the last patch
    expect(expectError(() => poolTokens(f, { stride: 2 }), "NON_FINITE")).toContain("hidden holds -Infinity at token 63, dim 63");
    expect(expectError(() => regionPack(f, { scale: 2 }), "NON_FINITE")).toContain("hidden holds -Infinity at token 63, dim 63");
    f.hidden[63 * 64 + 63] = 0;
    expect(poolTokens(f, { stride: 2 }).numTokens).toBe(16);
    const g = features(8, 8, 64, 8);
    const merged = visionZip(g, { dominant: 10, contextual: 4 }).provenance.find((p) => p.kind === "contextual" && p.sources.length > 1)!;
    const member = merged.sources[merged.sources.length - 1];
    g.hidden[member * 64] = Infinity;
    expect(expectError(() => visionZip(g, { dominant: 10, contextual: 4 }), "NON_FINITE")).toContain(`at token ${member}, dim 0`);
  });

  it("report a NaN key, and take keys too long for float32 squares in their stride", () => {
    const f = features(8, 8, 64, 9);
    const merged = visionZip(f, { dominant: 10, contextual: 4 }).provenance.filter((p) => p.kind === "contextual");
    const member = merged.find((p) => p.sources.length > 1)!.sources[1];
    const bad = { ...f, keys: f.keys!.slice() };
    bad.keys[member * 16 + 15] = NaN;
    expect(expectError(() => visionZip(bad, { dominant: 10, contextual: 4 }), "NON_FINITE")).toContain(`keys holds NaN at token ${member}, dim 15`);
    const long = { ...f, keys: f.keys!.map((v) => v * 1e21) }; // |key|^2 ~ 1e42: finite in float64 only
    const [fast, plain] = both(() => visionZip(long, { dominant: 10, contextual: 4 }));
    expect(fast.provenance).toEqual(plain.provenance);
    expect(fast.provenance).toEqual(visionZip(f, { dominant: 10, contextual: 4 }).provenance);
  });

  it("match near-ties the way the float64 loop does", () => {
    // 1 x 8 grid, token 0 dominant; remaining 1..7 with contextual 2 gives targets 1 and 4. Every
    // other key is [1, 5e-4, 0, 0]: its similarity to target 4's unit key [1, 1e-4] / |.| beats
    // target 1's [1, 0] by 4.5e-8 in float64, less than float32 can tell apart from 1.
    const f = gridFeatures(1, 8, 4);
    f.heads = 1;
    f.attention = Float32Array.from({ length: 64 }, (_, i) => (i % 8 === 0 ? 0.3 : 0.1));
    f.keyDim = 4;
    f.keys = Float32Array.from({ length: 32 }, (_, i) => (i % 4 === 0 ? 1 : i % 4 === 1 ? (i === 5 ? 0 : i === 17 ? 1e-4 : 5e-4) : 0));
    const [fast, plain] = both(() => visionZip(f, { dominant: 1, contextual: 2 }));
    expect(plain.provenance.map((p) => Array.from(p.sources))).toEqual([[0], [1], [2, 3, 4, 5, 6, 7]]);
    expect(fast.provenance).toEqual(plain.provenance);
  });
});
