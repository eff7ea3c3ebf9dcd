// Region packing's fast paths, apart from the algorithm (regionpack.ts checks the options;
// reference/regionpack.ts is the plain version of the spec, and the tests hold these paths to it):
// with the SIMD kernels, scale 2 builds the query and its four logits in one pass (logits4) and
// any other scale goes query, logits, weighted sum row by row; without them the same in float64,
// scale 2 fused the same way and other scales four patches per pass over the query.
import { allFinite, patchToken, throwNonFiniteOutput } from "../features.js";
import { softmaxInPlace, sourceTaps } from "../math.js";
import { simd, stage } from "../simd.js";
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "../types.js";

/** One "packed" token per scale x scale region of the patch grid ({rows, cols} regions). */
export function packRegions(f: VisionFeatures, scale: number, regions: { rows: number; cols: number }): ReducedTokens {
  const { rows, cols } = f.grid;
  const { dim, hidden, clsIndex } = f;
  const ys = sourceTaps(rows, regions.rows);
  const xs = sourceTaps(cols, regions.cols);
  const size = scale * scale;
  const numTokens = regions.rows * regions.cols;
  // With SIMD the regions run in float32 inside the kernels' memory, else in float64 here.
  const k = dim % 4 === 0 ? simd() : null;
  const staged = k && stage(k, hidden, numTokens * dim + dim, dim); // output rows, then the query
  const out = staged ? staged.mem.subarray(staged.extra, staged.extra + numTokens * dim) : new Float32Array(numTokens * dim);
  const provenance: TokenProvenance[] = [];
  const region = new Int32Array(size);
  const query = new Float32Array(dim);
  const weights = new Float64Array(size);
  const acc = new Float64Array(size > 4 ? dim : 0);
  const invSqrtDim = 1 / Math.sqrt(dim);
  let finite = true;

  for (let i = 0; i < regions.rows; i++) {
    const [r0, r1, wr1] = ys[i];
    for (let j = 0; j < regions.cols; j++) {
      let m = 0;
      for (let r = i * scale; r < (i + 1) * scale; r++) {
        for (let c = j * scale; c < (j + 1) * scale; c++) region[m++] = patchToken(r * cols + c, clsIndex);
      }
      // The point query: bilinear downsample at this region, as bilinearResize computes it.
      const [c0, c1, wc1] = xs[j];
      const a = patchToken(r0 * cols + c0, clsIndex) * dim, b = patchToken(r0 * cols + c1, clsIndex) * dim;
      const c = patchToken(r1 * cols + c0, clsIndex) * dim, e = patchToken(r1 * cols + c1, clsIndex) * dim;
      const wa = (1 - wr1) * (1 - wc1), wb = (1 - wr1) * wc1, wc = wr1 * (1 - wc1), we = wr1 * wc1;
      const o = provenance.length * dim;
      const fused = size === 4 && a === region[0] * dim && b === region[1] * dim && c === region[2] * dim && e === region[3] * dim;
      if (fused && k && staged) {
        // The query and its four logits in one pass, then the weighted sum, four floats at a time.
        const n = dim * 4, res = staged.res;
        k.logits4(a * 4, b * 4, c * 4, e * 4, n, wa, wb, wc, we, res * 4);
        for (let x = 0; x < 4; x++) weights[x] = staged.mem[res + x] * invSqrtDim;
        softmaxInPlace(weights, 4);
        k.wsum4((staged.extra + o) * 4, a * 4, b * 4, c * 4, e * 4, n, weights[0], weights[1], weights[2], weights[3]);
      } else if (k && staged) {
        // Any other scale: the query, then one logit per patch, then the weighted sum row by row.
        const n = dim * 4, res = staged.res, q = (staged.extra + numTokens * dim) * 4, dst = (staged.extra + o) * 4;
        k.wsum4(q, a * 4, b * 4, c * 4, e * 4, n, wa, wb, wc, we);
        for (let x = 0; x < size; x++) {
          k.dots(q, region[x] * n, 1, n, res * 4);
          weights[x] = staged.mem[res] * invSqrtDim;
        }
        softmaxInPlace(weights, size);
        k.axpy(dst, staged.zero * 4, region[0] * n, n, weights[0]);
        for (let x = 1; x < size; x++) k.axpy(dst, dst, region[x] * n, n, weights[x]);
      } else {
        if (fused) {
          // Scale 2: the query's four taps are the region's own patches, so one pass over them
          // builds the query (rounded to float32 like the stored one) and all four logits.
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (let d = 0; d < dim; d++) {
            const ha = hidden[a + d], hb = hidden[b + d], hc = hidden[c + d], he = hidden[e + d];
            const q = Math.fround(wa * ha + wb * hb + wc * hc + we * he);
            s0 += q * ha;
            s1 += q * hb;
            s2 += q * hc;
            s3 += q * he;
          }
          weights[0] = s0 * invSqrtDim;
          weights[1] = s1 * invSqrtDim;
          weights[2] = s2 * invSqrtDim;
          weights[3] = s3 * invSqrtDim;
        } else {
          for (let d = 0; d < dim; d++) query[d] = wa * hidden[a + d] + wb * hidden[b + d] + wc * hidden[c + d] + we * hidden[e + d];
          logits(hidden, dim, region, size, query, invSqrtDim, weights);
        }
        softmaxInPlace(weights, size);
        weightedSum(hidden, dim, region, weights, size, acc, out, o);
      }
      // A convex combination of finite rows is finite: a non-finite input row shows up here, in cache.
      if (!staged) finite &&= allFinite(out, o, o + dim);
      provenance.push({ kind: "packed", sources: region.slice() });
    }
  }
  if (k && staged) finite = k.finite(staged.extra * 4, numTokens * dim * 4) === 1;
  const reduced: ReducedTokens = { hidden: staged ? out.slice() : out, numTokens, dim, provenance };
  if (!finite) throwNonFiniteOutput(f, reduced, "regionPack");
  return reduced;
}

/** weights[k] = (query · hidden row list[k]) * scale for k < m, four rows per pass over the query. */
function logits(
  hidden: Float32Array,
  dim: number,
  list: Int32Array,
  m: number,
  query: Float32Array,
  scale: number,
  weights: Float64Array
): void {
  let k = 0;
  for (; k + 4 <= m; k += 4) {
    const h0 = list[k] * dim, h1 = list[k + 1] * dim, h2 = list[k + 2] * dim, h3 = list[k + 3] * dim;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let d = 0; d < dim; d++) {
      const q = query[d];
      s0 += q * hidden[h0 + d];
      s1 += q * hidden[h1 + d];
      s2 += q * hidden[h2 + d];
      s3 += q * hidden[h3 + d];
    }
    weights[k] = s0 * scale;
    weights[k + 1] = s1 * scale;
    weights[k + 2] = s2 * scale;
    weights[k + 3] = s3 * scale;
  }
  for (; k < m; k++) {
    const h0 = list[k] * dim;
    let s = 0;
    for (let d = 0; d < dim; d++) s += query[d] * hidden[h0 + d];
    weights[k] = s * scale;
  }
}

/**
 * out[o..o+dim) = sum over k of weights[k] * hidden row list[k], added up from 0 in k order (as
 * the plain loop would), four rows per pass; `acc` holds the float64 partial sums when m > 4.
 */
function weightedSum(
  hidden: Float32Array,
  dim: number,
  list: Int32Array,
  weights: Float64Array,
  m: number,
  acc: Float64Array,
  out: Float32Array,
  o: number
): void {
  if (m === 1) {
    const a = list[0] * dim, wa = weights[0];
    for (let d = 0; d < dim; d++) out[o + d] = 0 + wa * hidden[a + d];
    return;
  }
  let k = 0;
  for (; k + 4 <= m; k += 4) {
    const a = list[k] * dim, b = list[k + 1] * dim, c = list[k + 2] * dim, e = list[k + 3] * dim;
    const wa = weights[k], wb = weights[k + 1], wc = weights[k + 2], we = weights[k + 3];
    if (m === 4) {
      for (let d = 0; d < dim; d++) out[o + d] = 0 + wa * hidden[a + d] + wb * hidden[b + d] + wc * hidden[c + d] + we * hidden[e + d];
      return;
    }
    if (k === 0) for (let d = 0; d < dim; d++) acc[d] = 0 + wa * hidden[a + d] + wb * hidden[b + d] + wc * hidden[c + d] + we * hidden[e + d];
    else for (let d = 0; d < dim; d++) acc[d] = acc[d] + wa * hidden[a + d] + wb * hidden[b + d] + wc * hidden[c + d] + we * hidden[e + d];
  }
  if (k === 0) acc.fill(0);
  for (; k < m; k++) {
    const a = list[k] * dim, w = weights[k];
    for (let d = 0; d < dim; d++) acc[d] += w * hidden[a + d];
  }
  for (let d = 0; d < dim; d++) out[o + d] = acc[d];
}
