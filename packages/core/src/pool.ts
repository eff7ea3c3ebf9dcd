import { allFinite, checkFeatures, checkInteger, patchToken, throwNonFiniteOutput } from "./features.js";
import { sumRows } from "./math.js";
import { simd, stage } from "./simd.js";
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
  const provenance: TokenProvenance[] = [];
  const window = new Int32Array(stride * stride);
  const sum = new Float64Array(dim);
  let finite = true;

  // With SIMD the windows are summed in float32 inside the kernels' memory, else in float64 here.
  const k = dim % 4 === 0 ? simd() : null;
  const staged = k && stage(k, hidden, numTokens * dim, dim);
  const out = staged ? staged.mem.subarray(staged.extra, staged.extra + numTokens * dim) : new Float32Array(numTokens * dim);

  for (let i = 0; i < outRows; i++) {
    for (let j = 0; j < outCols; j++) {
      let m = 0;
      for (let r = i * stride; r < Math.min(rows, (i + 1) * stride); r++) {
        for (let c = j * stride; c < Math.min(cols, (j + 1) * stride); c++) window[m++] = patchToken(r * cols + c, clsIndex);
      }
      const o = provenance.length * dim;
      const inv = 1 / m;
      if (k && staged) {
        const n = dim * 4, dst = (staged.extra + o) * 4, zero = staged.zero * 4;
        const at = (x: number) => window[x] * n;
        let x = 0;
        if (m >= 4) {
          k.sum4(dst, at(0), at(1), at(2), at(3), n, m === 4 ? inv : 1);
          x = 4;
        } else {
          k.axpy(dst, at(0), zero, n, 0); // dst = first row
          x = 1;
        }
        for (; x + 4 <= m; x += 4) k.acc4(dst, at(x), at(x + 1), at(x + 2), at(x + 3), n);
        for (; x < m; x++) k.acc1(dst, at(x), n);
        if (m !== 4) k.axpy(dst, zero, dst, n, inv);
      } else if (m === 4) {
        // The common 2x2 window, straight into the output row.
        const a = window[0] * dim, b = window[1] * dim, c = window[2] * dim, e = window[3] * dim;
        for (let d = 0; d < dim; d++) out[o + d] = (hidden[a + d] + hidden[b + d] + (hidden[c + d] + hidden[e + d])) * inv;
      } else {
        sumRows(hidden, dim, window, m, sum);
        for (let d = 0; d < dim; d++) out[o + d] = sum[d] * inv;
      }
      // Each window's mean is finite exactly when its hidden rows are: check it while it is in cache.
      if (!staged) finite &&= allFinite(out, o, o + dim);
      provenance.push({ kind: "pooled", sources: window.slice(0, m) });
    }
  }
  if (k && staged) finite = k.finite(staged.extra * 4, numTokens * dim * 4) === 1;
  const reduced: ReducedTokens = { hidden: staged ? out.slice() : out, numTokens, dim, provenance };
  if (!finite) throwNonFiniteOutput(f, reduced, "poolTokens");
  return reduced;
}
