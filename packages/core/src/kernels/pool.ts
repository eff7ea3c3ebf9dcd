// Pooling's fast path, apart from the algorithm (pool.ts picks the windows; reference/pool.ts is
// the plain version of the spec, and the tests hold this path to it): window means summed in
// float32 with the SIMD kernels, or in float64 here (the common 2x2 window in one pass).
import { allFinite, throwNonFiniteOutput } from "../features.js";
import { sumRows } from "../math.js";
import { simd, stage } from "../simd.js";
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "../types.js";
import { simdSumRows } from "./means.js";

/** One "pooled" token per window: the mean of the hidden states of the window's tokens. */
export function windowMeans(f: VisionFeatures, windows: Int32Array[], reducer: string): ReducedTokens {
  const { hidden, dim } = f;
  const numTokens = windows.length;
  const provenance: TokenProvenance[] = [];
  const sum = new Float64Array(dim);
  let finite = true;

  const k = dim % 4 === 0 ? simd() : null;
  const staged = k && stage(k, hidden, numTokens * dim, dim);
  const out = staged ? staged.mem.subarray(staged.extra, staged.extra + numTokens * dim) : new Float32Array(numTokens * dim);

  for (const window of windows) {
    const m = window.length;
    const o = provenance.length * dim;
    const inv = 1 / m;
    if (k && staged) {
      const n = dim * 4, dst = (staged.extra + o) * 4, zero = staged.zero * 4;
      simdSumRows(k, dst, window, m, n, zero, inv);
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
    provenance.push({ kind: "pooled", sources: window });
  }
  if (k && staged) finite = k.finite(staged.extra * 4, numTokens * dim * 4) === 1;
  const reduced: ReducedTokens = { hidden: staged ? out.slice() : out, numTokens, dim, provenance };
  if (!finite) throwNonFiniteOutput(f, reduced, reducer);
  return reduced;
}
