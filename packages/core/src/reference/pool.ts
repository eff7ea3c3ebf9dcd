// Pooling, the reference version: the spec (DESIGN.md "Reducer specs") as plain code, float64, no
// fast path, no input checks. pool.ts (with kernels/pool.ts) is what runs; the tests hold it to this.
//
// poolTokens(f, { stride }): drop CLS, average non-overlapping stride×stride windows of the patch
// grid, row-major over the pooled grid (partial edge windows average what they have).
import type { ReducedTokens, VisionFeatures } from "../types.js";

export function poolReference(f: VisionFeatures, options: { stride: number }): ReducedTokens {
  const { hidden, dim, clsIndex: cls, grid } = f;
  const patchToken = (r: number, c: number) => (cls !== null && r * grid.cols + c >= cls ? 1 : 0) + r * grid.cols + c;
  const s = options.stride;
  const values: number[] = [];
  const provenance: ReducedTokens["provenance"] = [];
  for (let i = 0; i < grid.rows; i += s) {
    for (let j = 0; j < grid.cols; j += s) {
      const window: number[] = [];
      for (let r = i; r < Math.min(i + s, grid.rows); r++) for (let c = j; c < Math.min(j + s, grid.cols); c++) window.push(patchToken(r, c));
      for (let d = 0; d < dim; d++) values.push(window.reduce((sum, t) => sum + hidden[t * dim + d], 0) / window.length);
      provenance.push({ kind: "pooled", sources: Int32Array.from(window) });
    }
  }
  return { hidden: Float32Array.from(values), numTokens: provenance.length, dim, provenance };
}
