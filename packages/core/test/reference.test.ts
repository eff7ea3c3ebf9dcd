// The reducers as they run (SIMD kernels, or the plain float64 loops) against the reference
// versions of their specs (src/reference): the same tokens and provenance, values within float32
// rounding, over CLS first / last / none and shapes that do and do not fit the kernels.
import { afterAll, describe, expect, it } from "vitest";
import { poolTokens, regionPack, visionZip, visionZipAdaptive, type ReducedTokens, type VisionFeatures } from "../src/index.js";
import { poolReference } from "../src/reference/pool.js";
import { regionPackReference } from "../src/reference/regionpack.js";
import { visionZipAdaptiveReference, visionZipReference } from "../src/reference/visionzip.js";
import { setSimdEnabled } from "../src/simd.js";
import { expectClose, syntheticFeatures } from "./helpers.js";

const SHAPES = [
  { rows: 6, cols: 12, dim: 64, keyDim: 16, cls: "last" },
  { rows: 6, cols: 6, dim: 12, keyDim: 6, cls: "first" }, // keys that do not fit four lanes
  { rows: 6, cols: 6, dim: 10, keyDim: 8, cls: null } // hidden states that do not either (no SIMD at all)
] as const;

type Case = [string, (f: VisionFeatures) => ReducedTokens, (f: any) => ReducedTokens];
const CASES: Case[] = [
  ["visionZip 10+4", (f) => visionZip(f, { dominant: 10, contextual: 4 }), (f) => visionZipReference(f, { dominant: 10, contextual: 4 })],
  ["visionZip 20+7", (f) => visionZip(f, { dominant: 20, contextual: 7 }), (f) => visionZipReference(f, { dominant: 20, contextual: 7 })],
  ["visionZip 30+30 (more contextual than remaining)", (f) => visionZip(f, { dominant: 30, contextual: 30 }), (f) => visionZipReference(f, { dominant: 30, contextual: 30 })],
  ["visionZip 5+0", (f) => visionZip(f, { dominant: 5, contextual: 0 }), (f) => visionZipReference(f, { dominant: 5, contextual: 0 })],
  [
    "visionZipAdaptive",
    (f) => visionZipAdaptive(f, { coverage: 0.6, min: 4, max: 30, contextual: 5 }),
    (f) => visionZipAdaptiveReference(f, { coverage: 0.6, min: 4, max: 30, contextual: 5 })
  ],
  ...[1, 2, 3, 5].map((stride): Case => [`poolTokens ${stride}`, (f) => poolTokens(f, { stride }), (f) => poolReference(f, { stride })]),
  ...[1, 2, 3, 6].map((scale): Case => [`regionPack ${scale}`, (f) => regionPack(f, { scale }), (f) => regionPackReference(f, { scale })])
];

afterAll(() => setSimdEnabled(true));

describe.each([
  ["SIMD kernels", true],
  ["plain loops", false]
])("reducers (%s) give their reference version's output", (_, useSimd) => {
  it.each(CASES)("%s", (_, fast, reference) => {
    SHAPES.forEach((shape, i) => {
      const f = syntheticFeatures(shape, 100 + i);
      setSimdEnabled(useSimd);
      const out = fast(f);
      setSimdEnabled(true);
      const expected = reference(f);
      expect(out.provenance).toEqual(expected.provenance);
      expect(out.numTokens).toBe(expected.numTokens);
      expectClose(out.hidden, expected.hidden, 1e-5);
      if ("chosenDominant" in expected) expect(out).toHaveProperty("chosenDominant", expected.chosenDominant);
    });
  });
});
