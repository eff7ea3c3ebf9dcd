// Every reducer against reference outputs computed with PyTorch's own operators
// (F.interpolate, nn.MultiheadAttention, nn.LayerNorm, nn.GELU, avg_pool2d): see fixtures/make_golden.py.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { poolTokens, regionPack, tokenPacker, visionZip, type TokenPackerWeights } from "../src/index.js";
import { bilinearResize, geluInPlace } from "../src/math.js";
import { poolReference } from "../src/reference/pool.js";
import { regionPackReference } from "../src/reference/regionpack.js";
import { visionZipReference } from "../src/reference/visionzip.js";
import { setSimdEnabled } from "../src/simd.js";
import { expectClose, loadGolden, toFeatures } from "./helpers.js";

const golden = loadGolden();

describe("math kernels match PyTorch", () => {
  it("exact GELU", () => {
    const x = Float32Array.from(golden.gelu.x);
    geluInPlace(x);
    expectClose(x, golden.gelu.expected, 2e-7);
  });

  it.each(golden.resize.map((c: any) => [`${c.rows}x${c.cols} -> ${c.outRows}x${c.outCols}`, c]))(
    "bilinear resize %s like interpolate(align_corners=False)",
    (_, c: any) => {
      const out = bilinearResize(Float32Array.from(c.x), c.dim, c.rows, c.cols, c.outRows, c.outCols, (r, col) => r * c.cols + col);
      expectClose(out, c.expected);
    }
  );
});

// Each reducer case runs three ways: with the WebAssembly SIMD kernels (float32, where the shapes
// allow them), with the plain float64 loops, and as the reference version of its spec (src/reference).
const reducers = {
  fast: { visionZip, poolTokens, regionPack },
  reference: { visionZip: visionZipReference, poolTokens: poolReference, regionPack: regionPackReference }
} as const;

describe.each([
  ["SIMD kernels", true, reducers.fast],
  ["plain loops", false, reducers.fast],
  ["reference", false, reducers.reference]
] as const)("reducers match the PyTorch reference (%s)", (_, useSimd, run) => {
  beforeAll(() => setSimdEnabled(useSimd));
  afterAll(() => setSimdEnabled(true));

  it.each([...golden.visionzip, ...golden.visionzipEdge].map((c: any, i: number) => [i, c]))("visionZip case %i", (_, c: any) => {
    const out = run.visionZip(toFeatures(c.features) as any, { dominant: c.dominant, contextual: c.contextual });
    expect(out.numTokens).toBe(c.expected.numTokens);
    expectClose(out.hidden, c.expected.hidden);
  });

  it.each(golden.pool.map((c: any, i: number) => [i, c]))("poolTokens case %i (avg_pool2d, ceil_mode)", (_, c: any) => {
    const out = run.poolTokens(toFeatures(c.features), { stride: c.stride });
    expect(out.numTokens).toBe(c.expected.numTokens);
    expectClose(out.hidden, c.expected.hidden);
  });

  it.each(golden.regionpack.map((c: any, i: number) => [i, c]))("regionPack case %i", (_, c: any) => {
    const out = run.regionPack(toFeatures(c.features), { scale: c.scale });
    expect(out.numTokens).toBe(c.expected.numTokens);
    expectClose(out.hidden, c.expected.hidden);
  });
});

describe.each([
  ["SIMD kernels", true],
  ["plain loops", false]
])("the trained TokenPacker projector matches PyTorch (%s)", (_, useSimd) => {
  beforeAll(() => setSimdEnabled(useSimd));
  afterAll(() => setSimdEnabled(true));

  it.each(golden.tokenpacker.map((c: any, i: number) => [i, c]))("tokenPacker case %i (official state dict)", (_, c: any) => {
    const weights: TokenPackerWeights = Object.fromEntries(
      Object.entries(c.weights).map(([name, t]: [string, any]) => [name, { data: Float32Array.from(t.data), shape: t.shape }])
    );
    const input = { patches: Float32Array.from(c.patches), multiLevel: Float32Array.from(c.multiLevel), grid: c.grid };
    const out = tokenPacker(input, weights, { scaleFactor: c.scaleFactor, numHeads: c.numHeads });
    expect([out.numTokens, out.dim]).toEqual([c.expected.numTokens, c.expected.dim]);
    expectClose(out.hidden, c.expected.hidden);
  });
});
