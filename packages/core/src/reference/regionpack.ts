// Region packing, the reference version: the spec (DESIGN.md "Reducer specs") as plain code,
// float64 apart from the float32 query, no fast path, no input checks. regionpack.ts (with
// kernels/regionpack.ts) is what runs; the tests hold it to this.
//
// regionPack(f, { scale }) (after TokenPacker, no weights): drop CLS; point queries = bilinear
// downsample of the patch grid to (rows/scale × cols/scale), same sampling as PyTorch
// `interpolate(mode="bilinear", align_corners=False)`; each query attends over the scale×scale
// region it stands for, keys = values = that region's hidden states, weights =
// softmax(q·k / sqrt(dim)); output = weighted sum.
import { bilinearResize } from "../math.js";
import type { ReducedTokens, VisionFeatures } from "../types.js";

export function regionPackReference(f: VisionFeatures, options: { scale: number }): ReducedTokens {
  const { hidden, dim, clsIndex: cls, grid } = f;
  const patchToken = (r: number, c: number) => (cls !== null && r * grid.cols + c >= cls ? 1 : 0) + r * grid.cols + c;
  const s = options.scale;
  const [rows, cols] = [grid.rows / s, grid.cols / s];
  const queries = bilinearResize(hidden, dim, grid.rows, grid.cols, rows, cols, patchToken); // float32, as stored
  const values: number[] = [];
  const provenance: ReducedTokens["provenance"] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const q = queries.subarray((i * cols + j) * dim, (i * cols + j + 1) * dim);
      const region: number[] = [];
      for (let r = i * s; r < (i + 1) * s; r++) for (let c = j * s; c < (j + 1) * s; c++) region.push(patchToken(r, c));
      const logits = region.map((t) => q.reduce((sum, x, d) => sum + x * hidden[t * dim + d], 0) / Math.sqrt(dim));
      const max = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - max));
      const weights = e.map((x) => x / e.reduce((a, b) => a + b, 0));
      for (let d = 0; d < dim; d++) values.push(region.reduce((sum, t, k) => sum + weights[k] * hidden[t * dim + d], 0));
      provenance.push({ kind: "packed", sources: Int32Array.from(region) });
    }
  }
  return { hidden: Float32Array.from(values), numTokens: provenance.length, dim, provenance };
}
