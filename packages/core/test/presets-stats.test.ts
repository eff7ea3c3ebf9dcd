import { describe, expect, it } from "vitest";
import { BENCH_REDUCERS, DEFAULT_REDUCER, REDUCER_PRESETS } from "@leanvision/core/presets";
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
