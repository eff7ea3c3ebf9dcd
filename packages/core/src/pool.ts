import { allFinite, checkFeatures, checkInteger, patchToken, throwNonFiniteOutput } from "./features.js";
import { sumRows } from "./math.js";
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "./types.js";

export interface PoolOptions {
  /** Side of the square window averaged into one token. */
  stride: number;
}

/**
 * Pooling baseline: drop CLS and average non-overlapping stride x stride windows of the patch grid,
 * row-major over the pooled grid. Edge windows that run past the grid average what they cover.
 */
export function poolTokens(f: VisionFeatures, options: PoolOptions): ReducedTokens {
  checkFeatures(f, "poolTokens");
  const { rows, cols } = f.grid;
  const stride = checkInteger("poolTokens", "stride", options?.stride, 1, Math.max(rows, cols));
  const { hidden, dim, clsIndex } = f;
  const outRows = Math.ceil(rows / stride);
  const outCols = Math.ceil(cols / stride);
  const numTokens = outRows * outCols;
  const out = new Float32Array(numTokens * dim);
  const provenance: TokenProvenance[] = [];
  const window = new Int32Array(stride * stride);
  const sum = new Float64Array(dim);
  let finite = true;

  for (let i = 0; i < outRows; i++) {
    for (let j = 0; j < outCols; j++) {
      let m = 0;
      for (let r = i * stride; r < Math.min(rows, (i + 1) * stride); r++) {
        for (let c = j * stride; c < Math.min(cols, (j + 1) * stride); c++) window[m++] = patchToken(r * cols + c, clsIndex);
      }
      const o = provenance.length * dim;
      const inv = 1 / m;
      if (m === 4) {
        // The common 2x2 window, straight into the output row.
        const a = window[0] * dim, b = window[1] * dim, c = window[2] * dim, e = window[3] * dim;
        for (let d = 0; d < dim; d++) out[o + d] = (hidden[a + d] + hidden[b + d] + (hidden[c + d] + hidden[e + d])) * inv;
      } else {
        sumRows(hidden, dim, window, m, sum);
        for (let d = 0; d < dim; d++) out[o + d] = sum[d] * inv;
      }
      // Each window's mean is finite exactly when its hidden rows are: check it while it is in cache.
      finite &&= allFinite(out, o, o + dim);
      provenance.push({ kind: "pooled", sources: window.slice(0, m) });
    }
  }
  const reduced: ReducedTokens = { hidden: out, numTokens, dim, provenance };
  if (!finite) throwNonFiniteOutput(f, reduced, "poolTokens");
  return reduced;
}
