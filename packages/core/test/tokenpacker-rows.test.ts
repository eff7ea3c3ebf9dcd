// The `tokenpacker` reducer: TokenPacker's inputs gathered per output token, so a runtime runs the
// trained projector row by row. Checked against the readable reference tokenPacker() on the golden
// PyTorch cases: the projector applied to each row alone gives that row's token of the whole image.
import { describe, expect, it } from "vitest";
import {
  countReduced,
  formatReducerSpec,
  parseReducerSpec,
  reduce,
  reducerNeeds,
  tokenPacker,
  tokenPackerRows,
  type VisionFeatures
} from "../src/index.js";
import { expectClose, expectError, loadGolden } from "./helpers.js";
import { randomArray, random } from "./synthetic.js";

type Case = ReturnType<typeof loadGolden>["tokenpacker"][number];

const weightsOf = (c: Case) =>
  Object.fromEntries(Object.entries(c.weights).map(([name, t]: [string, any]) => [name, { data: Float32Array.from(t.data), shape: t.shape }]));

/** The golden case as llama.cpp's features: patches in grid order, then CLS; multi-level rows alike. */
function featuresOf(c: Case, cls: "first" | "last" | null): VisionFeatures {
  const patches = Float32Array.from(c.patches);
  const multi = Float32Array.from(c.multiLevel);
  const p = c.grid.rows * c.grid.cols;
  const dim = patches.length / p;
  const m = multi.length / p;
  const rand = random(7);
  const insert = (x: Float32Array, width: number) => {
    if (cls === null) return x;
    const out = new Float32Array((p + 1) * width);
    const clsRow = randomArray(width, rand);
    if (cls === "first") {
      out.set(clsRow, 0);
      out.set(x, width);
    } else {
      out.set(x, 0);
      out.set(clsRow, p * width);
    }
    return out;
  };
  return {
    hidden: insert(patches, dim),
    numTokens: p + (cls === null ? 0 : 1),
    dim,
    grid: c.grid,
    clsIndex: cls === null ? null : cls === "first" ? 0 : p,
    multiLevel: insert(multi, m),
    multiLevelDim: m
  };
}

describe("tokenpacker reducer", () => {
  it("parses with scale 2 by default and asks for multi-level hidden states", () => {
    expect(parseReducerSpec("tokenpacker")).toEqual({ kind: "tokenpacker", scale: 2 });
    expect(parseReducerSpec("tokenpacker:3")).toEqual({ kind: "tokenpacker", scale: 3 });
    expect(parseReducerSpec("tokenpacker:scale=4")).toEqual({ kind: "tokenpacker", scale: 4 });
    expect(formatReducerSpec({ kind: "tokenpacker", scale: 2 })).toBe("tokenpacker:2");
    expect(reducerNeeds({ kind: "tokenpacker", scale: 2 })).toEqual({ attention: false, keys: false, multiLevel: true });
  });

  it("scale 2, 3 and 4 give 144, 64 and 36 tokens on a 24x24 grid", () => {
    const f: VisionFeatures = {
      hidden: randomArray(577 * 8, random(1)),
      numTokens: 577,
      dim: 8,
      grid: { rows: 24, cols: 24 },
      clsIndex: 576,
      multiLevel: randomArray(577 * 12, random(2)),
      multiLevelDim: 12
    };
    const shape = { numTokens: 577, grid: { rows: 24, cols: 24 }, clsIndex: 576 };
    for (const [scale, tokens] of [[2, 144], [3, 64], [4, 36]]) {
      expect(countReduced([shape], { kind: "tokenpacker", scale })).toBe(tokens);
      const out = reduce(f, { kind: "tokenpacker", scale });
      expect(out.numTokens).toBe(tokens);
      expect(out.dim).toBe(8 + scale * scale * 12);
      expect(out.provenance.every((p) => p.kind === "packed" && p.sources.length === scale * scale)).toBe(true);
    }
    expect(countReduced([shape], { kind: "tokenpacker", scale: 5 })).toBeNull();
    expectError(() => reduce(f, { kind: "tokenpacker", scale: 5 }), "INVALID_OPTIONS");
  });

  for (const [index, cls] of [[0, "last"], [0, "first"], [1, null], [1, "last"]] as const) {
    it(`each row alone gives the reference's token (golden case ${index}, CLS ${cls ?? "none"})`, () => {
      const c = loadGolden().tokenpacker[index];
      const weights = weightsOf(c);
      const options = { scaleFactor: c.scaleFactor, numHeads: c.numHeads };
      const f = featuresOf(c, cls);
      const whole = tokenPacker({ patches: Float32Array.from(c.patches), multiLevel: Float32Array.from(c.multiLevel), grid: c.grid }, weights, options);
      const rows = tokenPackerRows(f, { scale: c.scaleFactor });
      expect(rows.numTokens).toBe(whole.numTokens);
      const s2 = c.scaleFactor ** 2;
      const m = f.multiLevelDim!;
      for (let r = 0; r < rows.numTokens; r++) {
        const row = rows.hidden.subarray(r * rows.dim, (r + 1) * rows.dim);
        // A region alone: its point query stands for every patch (the downsample of a constant grid is that constant).
        const patches = new Float32Array(s2 * f.dim);
        for (let n = 0; n < s2; n++) patches.set(row.subarray(0, f.dim), n * f.dim);
        const one = tokenPacker({ patches, multiLevel: row.slice(f.dim, f.dim + s2 * m), grid: { rows: c.scaleFactor, cols: c.scaleFactor } }, weights, options);
        expectClose(one.hidden, whole.hidden.subarray(r * whole.dim, (r + 1) * whole.dim), 1e-5);
        // Sources are token indices (CLS skipped), the reference's are grid positions.
        const offset = (p: number) => (cls === "first" ? p + 1 : p);
        expect(Array.from(rows.provenance[r].sources)).toEqual(Array.from(whole.provenance[r].sources, offset));
      }
    });
  }

  it("without multi-level states it says what to load; non-finite states are named", () => {
    const c = loadGolden().tokenpacker[0];
    const f = featuresOf(c, "last");
    expect(expectError(() => reduce({ ...f, multiLevel: undefined }, { kind: "tokenpacker", scale: 2 }), "MISSING_MULTILEVEL")).toContain("projectorPath");
    const broken = f.multiLevel!.slice();
    broken[5 * f.multiLevelDim! + 3] = NaN;
    expect(expectError(() => reduce({ ...f, multiLevel: broken }, { kind: "tokenpacker", scale: 2 }), "NON_FINITE")).toContain("token 5");
  });
});
