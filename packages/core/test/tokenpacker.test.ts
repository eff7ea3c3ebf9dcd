import { describe, expect, it } from "vitest";
import { tokenPacker, type TokenPackerInput, type TokenPackerWeights } from "../src/index.js";
import { expectError, loadGolden } from "./helpers.js";

const c = loadGolden().tokenpacker[0];
const weights = (): Record<string, { data: Float32Array; shape: number[] }> =>
  Object.fromEntries(Object.entries(c.weights).map(([name, t]: [string, any]) => [name, { data: Float32Array.from(t.data), shape: t.shape }]));
const input = (): TokenPackerInput => ({
  patches: Float32Array.from(c.patches),
  multiLevel: Float32Array.from(c.multiLevel),
  grid: c.grid
});
const options = { scaleFactor: 2, numHeads: 2 };

describe("tokenPacker", () => {
  it("packs each 2x2 region into one token and reports the patch positions it covers", () => {
    const out = tokenPacker(input(), weights(), options);
    expect(out.provenance.map((p) => Array.from(p.sources))).toEqual([
      [0, 1, 4, 5],
      [2, 3, 6, 7],
      [8, 9, 12, 13],
      [10, 11, 14, 15]
    ]);
    expect(out.provenance.every((p) => p.kind === "packed")).toBe(true);
  });

  it("names a missing or misshapen state-dict entry", () => {
    const missing = weights();
    delete missing["clip_attn.in_proj_bias"];
    expect(expectError(() => tokenPacker(input(), missing, options), "MISSING_WEIGHT")).toContain("clip_attn.in_proj_bias");

    const misshapen = weights();
    misshapen["ln_k_1.weight"] = { data: new Float32Array(7), shape: [7] };
    expect(expectError(() => tokenPacker(input(), misshapen, options), "BAD_WEIGHT_SHAPE")).toContain("ln_k_1.weight");

    expectError(() => tokenPacker(input(), null as unknown as TokenPackerWeights, options), "MISSING_WEIGHT");
  });

  it("checks the input against the weights' sizes and the options against the grid", () => {
    expectError(() => tokenPacker({ ...input(), patches: new Float32Array(10) }, weights(), options), "INVALID_INPUT");
    expectError(() => tokenPacker({ ...input(), multiLevel: new Float32Array(10) }, weights(), options), "INVALID_INPUT");
    expectError(() => tokenPacker({ ...input(), grid: { rows: 0, cols: 4 } }, weights(), options), "INVALID_INPUT");
    expectError(() => tokenPacker(input(), weights(), { scaleFactor: 3, numHeads: 2 }), "INVALID_OPTIONS");
    expectError(() => tokenPacker(input(), weights(), { scaleFactor: 2, numHeads: 3 }), "INVALID_OPTIONS");
  });
});
