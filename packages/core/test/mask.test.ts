import { describe, expect, it } from "vitest";
import { keepMask, poolTokens, reduce, regionPack, visionZip, type ReducedTokens, type VisionFeatures } from "../src/index.js";
import { expectError, gridFeatures, loadGolden, toFeatures, toLlamaOrder } from "./helpers.js";

/** 1 x w grid, no CLS, token t has hidden 10t; token 0 receives the most attention. */
function row(w: number, keys: number[][]): VisionFeatures {
  const f = gridFeatures(1, w, 1, Float32Array.from({ length: w }, (_, t) => 10 * t));
  f.heads = 1;
  f.attention = Float32Array.from({ length: w * w }, (_, i) => (i % w === 0 ? 0.5 : 0.1));
  f.keyDim = 2;
  f.keys = Float32Array.from(keys.flat());
  return f;
}

describe("keepMask", () => {
  it("marks dominant tokens 1, contextual targets 2 and merged tokens 0", () => {
    // Remaining tokens 1..5, contextual 2: step 2, targets tokens 1 and 3; 2 and 4 join 1, 5 joins 3.
    const f = row(6, [[9, 9], [1, 0], [2, 0.1], [0, 1], [1, 1], [0.1, 5]]);
    const out = visionZip(f, { dominant: 1, contextual: 2 });
    expect(Array.from(keepMask(out, f))).toEqual([1, 2, 0, 2, 0, 0]);
  });

  it("finds the targets at every step-th remaining token", () => {
    // Remaining tokens 1..7, contextual 3: step floor(7 / 3) = 2, targets tokens 1, 3, 5.
    const f = row(8, [[1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 1], [1, 0], [0, 1]]);
    const out = visionZip(f, { dominant: 1, contextual: 3 });
    expect(Array.from(keepMask(out, f))).toEqual([1, 2, 0, 2, 0, 2, 0, 0]);
    // More contextual tokens than remaining: every remaining token (5, 6, 7 after ties) is a target.
    expect(Array.from(keepMask(visionZip(f, { dominant: 5, contextual: 8 }), f))).toEqual([1, 1, 1, 1, 1, 2, 2, 2]);
  });

  it("maps token indices to grid positions around CLS; dropped patches are 0", () => {
    // CLS at token 0, 3x3 grid; the CLS row picks tokens 2, 5 and 7 (grid positions 1, 4, 6).
    const n = 10;
    const attention = new Float32Array(n * n);
    attention.set([0.1, 0, 0.5, 0, 0, 0.375, 0, 0.6, 0, 0]);
    const f: VisionFeatures = { hidden: new Float32Array(n), numTokens: n, dim: 1, grid: { rows: 3, cols: 3 }, clsIndex: 0, attention, heads: 1 };
    const out = visionZip(f, { dominant: 4, contextual: 0 });
    expect(Array.from(keepMask(out, f))).toEqual([0, 1, 0, 0, 1, 0, 1, 0, 0]);
  });

  it("gives the same mask with CLS first or last (llama.cpp order)", () => {
    const hf = toFeatures(loadGolden().visionzip[1].features); // CLS + 6x6
    const { llama } = toLlamaOrder(hf);

    const a = keepMask(visionZip(hf, { dominant: 10, contextual: 5 }), hf);
    expect(keepMask(visionZip(llama, { dominant: 10, contextual: 5 }), llama)).toEqual(a);
    expect(a.length).toBe(36);
    expect(a.filter((v) => v === 1).length).toBe(9); // dominant 10 counts CLS
    expect(a.filter((v) => v === 2).length).toBe(5);
  });

  it("marks every patch 1 for pooled, packed and passed-through tokens", () => {
    const f = toFeatures(loadGolden().visionzip[1].features);
    for (const out of [poolTokens(f, { stride: 4 }), regionPack(f, { scale: 3 }), reduce(f, { kind: "none" })]) {
      expect(Array.from(keepMask(out, f))).toEqual(new Array(36).fill(1));
    }
  });

  it("rejects a grid that does not match, or tokens it cannot place", () => {
    const f = row(6, [[9, 9], [1, 0], [2, 0.1], [0, 1], [1, 1], [0.1, 5]]);
    const out = visionZip(f, { dominant: 1, contextual: 2 });
    expectError(() => keepMask(out, { ...f, grid: { rows: 2, cols: 2 } }), "INVALID_INPUT");
    expectError(() => keepMask(out, { grid: { rows: 1, cols: 4 }, clsIndex: null, numTokens: 4 }), "INVALID_INPUT");
    const shuffled: ReducedTokens = { ...out, provenance: [out.provenance[0], out.provenance[2], out.provenance[1]] };
    expect(expectError(() => keepMask(shuffled, f), "INVALID_INPUT")).toMatch(/target/);
  });
});
