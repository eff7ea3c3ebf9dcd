import { describe, expect, it } from "vitest";
import { BENCH_REDUCERS, DEFAULT_REDUCER, presetsFor, REDUCER_PRESETS } from "@leanvision/core/presets";
import { median } from "@leanvision/core/stats";
import { formatReducerSpec, parseReducerSpec } from "../src/index.js";

describe("reducer presets", () => {
  it("are canonical text forms, each listed once", () => {
    const specs = REDUCER_PRESETS.map((p) => p.spec);
    for (const spec of specs) expect(formatReducerSpec(parseReducerSpec(spec))).toBe(spec);
    expect(new Set(specs).size).toBe(specs.length);
    expect(new Set(REDUCER_PRESETS.map((p) => p.label)).size).toBe(specs.length);
  });

  it("include the default and the benchmark set", () => {
    const specs = REDUCER_PRESETS.map((p) => p.spec);
    expect(specs).toContain(DEFAULT_REDUCER);
    for (const spec of BENCH_REDUCERS) expect(specs).toContain(spec);
    expect(BENCH_REDUCERS[0]).toBe("none");
  });

  it("fit the model's tile: counts in the labels, grid reducers at a scale that divides the grid", () => {
    const clip = REDUCER_PRESETS.map((p) => `${p.spec} = ${p.label}`);
    expect(clip).toContain("none = no reduction (576)");
    expect(clip).toContain("visionzip:54+10 = VisionZip 54+10 (64)");
    expect(clip).toContain("regionpack:2 = region packing 2× (144)");
    // SigLIP-so400m/384 (OneVision, nanoLLaVA): 27x27 patches, no CLS; 2 does not divide 27.
    const siglip = presetsFor({ numTokens: 729, grid: { rows: 27, cols: 27 }, clsIndex: null });
    expect(siglip.map((p) => `${p.spec} = ${p.label}`)).toEqual([
      "none = no reduction (729)",
      "visionzip:54+10 = VisionZip 54+10 (64)",
      "visionzip:108+20 = VisionZip 108+20 (128)",
      "visionzip:162+30 = VisionZip 162+30 (192)",
      "visionzip:auto:0.9+10:32-160 = VisionZip adaptive (90% of attention)",
      "pool:2 = 2×2 pooling (196)",
      "regionpack:3 = region packing 3× (81)"
    ]);
    // A prime grid: no region packing scale fits (but the whole grid), so it is not offered.
    const prime = presetsFor({ numTokens: 49, grid: { rows: 7, cols: 7 }, clsIndex: null }).map((p) => p.spec);
    expect(prime.filter((s) => s.startsWith("regionpack"))).toEqual([]);
    expect(prime).toContain("pool:2");
  });
});

describe("median", () => {
  it("is the middle value, or the mean of the two middle ones", () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([2, 1])).toBe(1.5);
  });

  it("leaves its input alone and rejects an empty list", () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
    expect(() => median([])).toThrow(RangeError);
  });
});
