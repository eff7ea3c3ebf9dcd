import { describe, expect, it } from "vitest";
import { visionZip, visionZipAdaptive, type VisionFeatures } from "../src/index.js";
import { expectError, gridFeatures, loadGolden, toFeatures, toLlamaOrder } from "./helpers.js";

const sourcesOf = (out: { provenance: { sources: Int32Array }[] }) => out.provenance.map((p) => Array.from(p.sources));

/** CLS at token 0 plus a 3x3 grid; the CLS row of head 0 and head 1 set from `clsRows`. */
function withClsAttention(clsRows: number[][]): VisionFeatures {
  const n = 10;
  const attention = new Float32Array(clsRows.length * n * n);
  clsRows.forEach((row, h) => row.forEach((v, j) => (attention[h * n * n + j] = v)));
  return {
    hidden: Float32Array.from({ length: n * 2 }, (_, i) => Math.floor(i / 2) * 10 + (i % 2)),
    numTokens: n,
    dim: 2,
    grid: { rows: 3, cols: 3 },
    clsIndex: 0,
    attention,
    heads: clsRows.length
  };
}

describe("visionZip dominant tokens", () => {
  // Head 0 alone would pick tokens 1, 2, 3; summed over heads the top three patches are 7, 2, 5.
  const f = withClsAttention([
    [0.1, 0.3, 0.25, 0.15, 0, 0.125, 0, 0.05, 0.05, 0.05],
    [0.0, 0, 0.125, 0, 0, 0.25, 0, 0.5, 0, 0]
  ]);

  it("keeps CLS plus the patches the CLS row attends to most (summed over heads), in token order", () => {
    const out = visionZip(f, { dominant: 4, contextual: 0 });
    expect(sourcesOf(out)).toEqual([[0], [2], [5], [7]]);
    expect(out.provenance.map((p) => p.kind)).toEqual(["cls", "dominant", "dominant", "dominant"]);
    expect(Array.from(out.hidden)).toEqual([0, 1, 20, 21, 50, 51, 70, 71]);
  });

  it("breaks score ties at the cut by taking the lower token index", () => {
    // Tokens 2 and 5 both score exactly 0.375; one slot is left after token 7.
    expect(sourcesOf(visionZip(f, { dominant: 3, contextual: 0 }))).toEqual([[0], [2], [7]]);
  });

  it("counts CLS in the dominant budget", () => {
    expect(visionZip(f, { dominant: 1, contextual: 0 }).numTokens).toBe(1);
    expect(visionZip(f, { dominant: 10, contextual: 0 }).numTokens).toBe(10);
  });

  it("gives the same tokens with llama.cpp's order (CLS after the patches)", () => {
    const hf = toFeatures(loadGolden().visionzip[1].features);
    const n = hf.numTokens;
    const { llama, fromLlama } = toLlamaOrder(hf);

    const a = visionZip(hf, { dominant: 10, contextual: 5 });
    const b = visionZip(llama, { dominant: 10, contextual: 5 });
    expect(b.hidden).toEqual(a.hidden);
    expect(b.provenance[0]).toEqual({ kind: "cls", sources: Int32Array.of(n - 1) });
    expect(sourcesOf(b).map((s) => s.map(fromLlama).sort((x, y) => x - y))).toEqual(sourcesOf(a));
  });

  it("without CLS ranks patches by the mean attention they receive over heads and queries", () => {
    const f = gridFeatures(2, 2, 1);
    f.heads = 2;
    f.attention = new Float32Array(2 * 16);
    // Token 3 is the strongest single entry, but tokens 1 and 2 receive more in total.
    f.attention.set([0, 0.2, 0.2, 0.6, 0, 0.5, 0.5, 0, 0, 0.5, 0.5, 0, 1, 0, 0, 0]);
    f.attention.set([0, 0.4, 0.4, 0.2, 0, 0.5, 0.5, 0, 0, 0.5, 0.5, 0, 1, 0, 0, 0], 16);
    const out = visionZip(f, { dominant: 2, contextual: 0 });
    expect(sourcesOf(out)).toEqual([[1], [2]]);
    expect(out.provenance.every((p) => p.kind === "dominant")).toBe(true);
  });
});

describe("visionZip contextual tokens", () => {
  /** 1x6 grid, no CLS, token t has hidden 10t; token 0 receives the most attention. */
  function sixTokens(keys: number[][]): VisionFeatures {
    const f = gridFeatures(1, 6, 1, Float32Array.from({ length: 6 }, (_, t) => 10 * t));
    f.heads = 1;
    f.attention = Float32Array.from({ length: 36 }, (_, i) => (i % 6 === 0 ? 0.5 : 0.1));
    f.keyDim = 2;
    f.keys = Float32Array.from(keys.flat());
    return f;
  }

  it("merges each remaining token into its most similar target: target + mean of its members", () => {
    // Remaining tokens 1..5, contextual 2: step 2, targets are tokens 1 and 3.
    // Token 2 is close to token 1, token 5 to token 3, token 4 ties and goes to the first target.
    const f = sixTokens([[9, 9], [1, 0], [2, 0.1], [0, 1], [1, 1], [0.1, 5]]);
    const out = visionZip(f, { dominant: 1, contextual: 2 });
    expect(sourcesOf(out)).toEqual([[0], [1, 2, 4], [3, 5]]);
    expect(out.provenance.map((p) => p.kind)).toEqual(["dominant", "contextual", "contextual"]);
    expect(Array.from(out.hidden)).toEqual([0, 10 + (20 + 40) / 2, 30 + 50]);
  });

  it("compares key directions, not lengths, and leaves a target nobody joins unchanged", () => {
    // Remaining 1..5, contextual 3: step 1, targets 1, 2, 3. Target 1's long key would win token 5
    // on raw dot products (2 > 1); by direction token 5 is closest to target 2.
    const f = sixTokens([[9, 9], [10, 0], [0, 1], [-1, -1], [100, 1], [0.2, 1]]);
    const out = visionZip(f, { dominant: 1, contextual: 3 });
    expect(sourcesOf(out)).toEqual([[0], [1, 4], [2, 5], [3]]);
    expect(Array.from(out.hidden)).toEqual([0, 10 + 40, 20 + 50, 30]);
  });

  it("makes no more contextual tokens than there are remaining tokens", () => {
    const f = sixTokens([[1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [1, 0]]);
    expect(visionZip(f, { dominant: 4, contextual: 5 }).numTokens).toBe(6);
    expect(visionZip(f, { dominant: 6, contextual: 5 }).numTokens).toBe(6);
  });

  it("needs no keys when contextual is 0", () => {
    const f = sixTokens([]);
    delete f.keys;
    expect(visionZip(f, { dominant: 3, contextual: 0 }).numTokens).toBe(3);
    expectError(() => visionZip(f, { dominant: 3, contextual: 1 }), "MISSING_KEYS");
  });
});

describe("visionZipAdaptive", () => {
  // Patch scores 0.5, 0.3, 0.1, 0.05, 0.05 (tokens 1..5), then zeros.
  const f = withClsAttention([[0, 0.5, 0.3, 0.1, 0.05, 0.05, 0, 0, 0, 0]]);

  it("keeps the fewest patches whose score mass reaches the coverage, plus CLS", () => {
    const out = visionZipAdaptive(f, { coverage: 0.8, min: 1, max: 10, contextual: 0 });
    expect(out.chosenDominant).toBe(3);
    expect(sourcesOf(out)).toEqual([[0], [1], [2]]);
    expect(visionZipAdaptive(f, { coverage: 0.85, min: 1, max: 10, contextual: 0 }).chosenDominant).toBe(4);
    expect(visionZipAdaptive(f, { coverage: 1, min: 1, max: 10, contextual: 0 }).chosenDominant).toBe(6);
  });

  it("clamps the choice to [min, max] and otherwise matches visionZip at that budget", () => {
    expect(visionZipAdaptive(f, { coverage: 0.8, min: 5, max: 10, contextual: 0 }).chosenDominant).toBe(5);
    const capped = visionZipAdaptive(f, { coverage: 1, min: 1, max: 2, contextual: 0 });
    expect(capped.chosenDominant).toBe(2);
    expect(capped.hidden).toEqual(visionZip(f, { dominant: 2, contextual: 0 }).hidden);
  });

  it("rejects a coverage outside (0, 1] and max below min", () => {
    expectError(() => visionZipAdaptive(f, { coverage: 0, min: 1, max: 4, contextual: 0 }), "INVALID_OPTIONS");
    expectError(() => visionZipAdaptive(f, { coverage: 1.5, min: 1, max: 4, contextual: 0 }), "INVALID_OPTIONS");
    expectError(() => visionZipAdaptive(f, { coverage: 0.5, min: 4, max: 2, contextual: 0 }), "INVALID_OPTIONS");
  });
});

describe("visionZip input errors", () => {
  const good = () => toFeatures(loadGolden().visionzip[0].features);

  it("says what is missing or inconsistent", () => {
    expect(expectError(() => visionZip({ ...good(), attention: undefined }, { dominant: 5, contextual: 4 }), "MISSING_ATTENTION")).toMatch(
      /flash attention/
    );
    expectError(() => visionZip({ ...good(), heads: 2 }, { dominant: 5, contextual: 4 }), "MISSING_ATTENTION");
    expectError(() => visionZip({ ...good(), keyDim: 3 }, { dominant: 5, contextual: 4 }), "MISSING_KEYS");
    expectError(() => visionZip({ ...good(), hidden: new Float32Array(3) }, { dominant: 5, contextual: 4 }), "INVALID_FEATURES");
    expectError(() => visionZip({ ...good(), grid: { rows: 4, cols: 5 } }, { dominant: 5, contextual: 4 }), "INVALID_FEATURES");
    expectError(() => visionZip({ ...good(), clsIndex: 17 }, { dominant: 5, contextual: 4 }), "INVALID_FEATURES");
  });

  it("rejects budgets that do not fit the image", () => {
    for (const dominant of [0, 18, 2.5, NaN]) expectError(() => visionZip(good(), { dominant, contextual: 4 }), "INVALID_OPTIONS");
    expectError(() => visionZip(good(), { dominant: 5, contextual: -1 }), "INVALID_OPTIONS");
    expectError(() => visionZip(good(), undefined as never), "INVALID_OPTIONS");
  });
});

describe("visionZip from runtime-computed attention scores", () => {
  it.each([0, 1, 2])("selects and merges exactly as from the full attention (golden case %i)", (i) => {
    const f = toFeatures(loadGolden().visionzip[i].features);
    const n = f.numTokens;
    const scores = new Float32Array(n);
    for (let h = 0; h < f.heads!; h++) {
      for (let q = 0; q < n; q++) {
        if (f.clsIndex !== null && q !== f.clsIndex) continue;
        for (let t = 0; t < n; t++) scores[t] += f.attention![(h * n + q) * n + t];
      }
    }
    const { attention, ...rest } = f;
    const fromScores = visionZip({ ...rest, attentionScores: scores }, { dominant: 6, contextual: 3 });
    const fromAttention = visionZip(f, { dominant: 6, contextual: 3 });
    expect(fromScores.provenance).toEqual(fromAttention.provenance);
    expect(fromScores.hidden).toEqual(fromAttention.hidden);
    expectError(() => visionZip({ ...rest, attentionScores: scores.subarray(1) }, { dominant: 6, contextual: 3 }), "MISSING_ATTENTION");
  });
});
