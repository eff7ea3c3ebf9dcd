import { describe, expect, it } from "vitest";
import { poolTokens, regionPack, type VisionFeatures } from "../src/index.js";
import { expectError, gridFeatures } from "./helpers.js";

const sourcesOf = (out: { provenance: { sources: Int32Array }[] }) => out.provenance.map((p) => Array.from(p.sources));

/** A 3x3 grid with the CLS token after the patches (llama.cpp order); patch t has hidden [t, -t]. */
function llamaOrder(): VisionFeatures {
  const hidden = new Float32Array(10 * 2);
  for (let t = 0; t < 9; t++) hidden.set([t, -t], t * 2);
  hidden.set([100, 100], 18);
  return { hidden, numTokens: 10, dim: 2, grid: { rows: 3, cols: 3 }, clsIndex: 9 };
}

describe("poolTokens", () => {
  it("averages stride x stride windows row-major, partial edge windows over what they cover, CLS dropped", () => {
    const out = poolTokens(llamaOrder(), { stride: 2 });
    expect(sourcesOf(out)).toEqual([[0, 1, 3, 4], [2, 5], [6, 7], [8]]);
    expect(out.provenance.every((p) => p.kind === "pooled")).toBe(true);
    expect(Array.from(out.hidden)).toEqual([2, -2, 3.5, -3.5, 6.5, -6.5, 8, -8]);
  });

  it("with CLS first, sources are the input token indices", () => {
    const f = gridFeatures(2, 2, 1, Float32Array.of(50, 1, 2, 3, 4));
    f.numTokens = 5;
    f.clsIndex = 0;
    const out = poolTokens(f, { stride: 2 });
    expect(sourcesOf(out)).toEqual([[1, 2, 3, 4]]);
    expect(Array.from(out.hidden)).toEqual([2.5]);
  });

  it("stride 1 passes every patch through", () => {
    const f = gridFeatures(2, 3, 2);
    expect(poolTokens(f, { stride: 1 }).hidden).toEqual(f.hidden);
  });

  it("rejects a stride that is not a positive integer within the grid", () => {
    for (const stride of [0, 1.5, 4]) expectError(() => poolTokens(gridFeatures(3, 3, 1), { stride }), "INVALID_OPTIONS");
  });
});

describe("regionPack", () => {
  it("packs each scale x scale region into one token, sources = that region's tokens", () => {
    const f = gridFeatures(2, 4, 3);
    const out = regionPack(f, { scale: 2 });
    expect(sourcesOf(out)).toEqual([[0, 1, 4, 5], [2, 3, 6, 7]]);
    expect(out.provenance.every((p) => p.kind === "packed")).toBe(true);
  });

  it("outputs a convex combination of the region: a uniform region packs to itself", () => {
    const hidden = new Float32Array(16 * 2);
    for (let p = 0; p < 16; p++) {
      const region = Math.floor(Math.floor(p / 4) / 2) * 2 + Math.floor((p % 4) / 2);
      hidden.set([region + 1, -2 * region], p * 2);
    }
    const out = regionPack(gridFeatures(4, 4, 2, hidden), { scale: 2 });
    expect(Array.from(out.hidden)).toEqual([1, 0, 2, -2, 3, -4, 4, -6]);
  });

  it("weights the region's patches by their similarity to the point query", () => {
    // One 2x2 region: the bilinear query is the mean [1, 0.25]; patch 0 = [4, 0] aligns with it best.
    const out = regionPack(gridFeatures(2, 2, 2, Float32Array.of(4, 0, 0, 1, 0, 0, 0, 0)), { scale: 2 });
    const logits = [4 * 1, 1 * 0.25, 0, 0].map((l) => l / Math.SQRT2);
    const weights = logits.map((l) => Math.exp(l) / logits.reduce((s, x) => s + Math.exp(x), 0));
    expect(out.hidden[0]).toBeCloseTo(4 * weights[0], 6);
    expect(out.hidden[1]).toBeCloseTo(weights[1], 6);
  });

  it("scale 1 keeps every patch (each query attends only to itself) and drops CLS", () => {
    const out = regionPack(llamaOrder(), { scale: 1 });
    expect(sourcesOf(out)).toEqual(Array.from({ length: 9 }, (_, t) => [t]));
    expect(Array.from(out.hidden)).toEqual(Array.from(llamaOrder().hidden.subarray(0, 18), (v) => v + 0)); // -0 → 0
  });

  it("names the scales that fit when one does not divide the grid", () => {
    const message = expectError(() => regionPack(gridFeatures(6, 4, 1), { scale: 3 }), "INVALID_OPTIONS");
    expect(message).toContain("use one of 1, 2");
  });
});
