// Small dense-math kernels shared by the reducers. Inputs are float32; sums run in float64
// (plain JS numbers) and results are stored back as float32.

/**
 * y[n x out] = x[n x in] · Wᵀ (+ bias), with W in PyTorch Linear layout [out x in].
 * Four input rows share each pass over a weight row, so W streams through the cache n/4 times.
 */
export function linear(
  x: Float32Array,
  rows: number,
  inDim: number,
  weight: Float32Array,
  outDim: number,
  bias?: Float32Array
): Float32Array {
  const y = new Float32Array(rows * outDim);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const x0 = r * inDim, x1 = x0 + inDim, x2 = x1 + inDim, x3 = x2 + inDim;
    for (let o = 0; o < outDim; o++) {
      const w = o * inDim;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < inDim; k++) {
        const wk = weight[w + k];
        s0 += x[x0 + k] * wk;
        s1 += x[x1 + k] * wk;
        s2 += x[x2 + k] * wk;
        s3 += x[x3 + k] * wk;
      }
      const b = bias ? bias[o] : 0;
      y[r * outDim + o] = s0 + b;
      y[(r + 1) * outDim + o] = s1 + b;
      y[(r + 2) * outDim + o] = s2 + b;
      y[(r + 3) * outDim + o] = s3 + b;
    }
  }
  for (; r < rows; r++) {
    const x0 = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const w = o * inDim;
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[x0 + k] * weight[w + k];
      y[r * outDim + o] = s + (bias ? bias[o] : 0);
    }
  }
  return y;
}

/** LayerNorm over each row of x[rows x dim], in place (biased variance, like PyTorch). */
export function layerNormInPlace(
  x: Float32Array,
  rows: number,
  dim: number,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let mean = 0;
    for (let k = 0; k < dim; k++) mean += x[o + k];
    mean /= dim;
    let variance = 0;
    for (let k = 0; k < dim; k++) {
      const d = x[o + k] - mean;
      variance += d * d;
    }
    const inv = 1 / Math.sqrt(variance / dim + eps);
    for (let k = 0; k < dim; k++) x[o + k] = (x[o + k] - mean) * inv * gamma[k] + beta[k];
  }
}

/**
 * Complementary error function, relative error below 1.2e-7 everywhere
 * (Chebyshev fit from Numerical Recipes), enough for float32 outputs.
 */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
        t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    );
  return x >= 0 ? r : 2 - r;
}

/** Exact (erf-based) GELU, PyTorch's nn.GELU() default, in place. */
export function geluInPlace(x: Float32Array): void {
  // gelu(x) = x·Φ(x) = x·erfc(-x/√2)/2, which keeps full relative precision for negative x.
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * x[i] * erfc(-x[i] * Math.SQRT1_2);
}

/** Softmax over values[0..length), in place, max-subtracted for stability. */
export function softmaxInPlace(values: Float64Array, length: number): void {
  let max = -Infinity;
  for (let i = 0; i < length; i++) if (values[i] > max) max = values[i];
  let sum = 0;
  for (let i = 0; i < length; i++) {
    values[i] = Math.exp(values[i] - max);
    sum += values[i];
  }
  for (let i = 0; i < length; i++) values[i] /= sum;
}

/**
 * Bilinear resize of a [rows x cols] grid of dim-vectors to [outRows x outCols], sampling exactly
 * like PyTorch `interpolate(mode="bilinear", align_corners=False)` with an output size.
 * `rowOf(r, c)` gives the row of x that holds grid cell (r, c), so callers can skip a CLS token
 * without copying.
 */
export function bilinearResize(
  x: Float32Array,
  dim: number,
  rows: number,
  cols: number,
  outRows: number,
  outCols: number,
  rowOf: (r: number, c: number) => number
): Float32Array {
  const ys = sourceTaps(rows, outRows);
  const xs = sourceTaps(cols, outCols);
  const out = new Float32Array(outRows * outCols * dim);
  for (let i = 0; i < outRows; i++) {
    const [r0, r1, wr1] = ys[i];
    for (let j = 0; j < outCols; j++) {
      const [c0, c1, wc1] = xs[j];
      const a = rowOf(r0, c0) * dim, b = rowOf(r0, c1) * dim, c = rowOf(r1, c0) * dim, d = rowOf(r1, c1) * dim;
      const wa = (1 - wr1) * (1 - wc1), wb = (1 - wr1) * wc1, wc = wr1 * (1 - wc1), wd = wr1 * wc1;
      const o = (i * outCols + j) * dim;
      for (let k = 0; k < dim; k++) out[o + k] = wa * x[a + k] + wb * x[b + k] + wc * x[c + k] + wd * x[d + k];
    }
  }
  return out;
}

/** For each output index: the two input indices it reads and the weight of the second. */
export function sourceTaps(inSize: number, outSize: number): Array<[number, number, number]> {
  const scale = inSize / outSize;
  const taps: Array<[number, number, number]> = [];
  for (let d = 0; d < outSize; d++) {
    const src = Math.max(0, (d + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    taps.push([i0, i1, src - i0]);
  }
  return taps;
}

/**
 * acc[0..dim) = the sum of hidden rows list[0..m) (m >= 1), four rows per pass over acc so the
 * float64 accumulator is read and written once per four rows; acc needs no clearing.
 */
export function sumRows(hidden: Float32Array, dim: number, list: Int32Array, m: number, acc: Float64Array): void {
  let i = 0;
  if (m >= 4) {
    const a = list[0] * dim, b = list[1] * dim, c = list[2] * dim, e = list[3] * dim;
    for (let d = 0; d < dim; d++) acc[d] = hidden[a + d] + hidden[b + d] + (hidden[c + d] + hidden[e + d]);
    i = 4;
  } else {
    const a = list[0] * dim;
    for (let d = 0; d < dim; d++) acc[d] = hidden[a + d];
    i = 1;
  }
  for (; i + 4 <= m; i += 4) {
    const a = list[i] * dim, b = list[i + 1] * dim, c = list[i + 2] * dim, e = list[i + 3] * dim;
    for (let d = 0; d < dim; d++) acc[d] += hidden[a + d] + hidden[b + d] + (hidden[c + d] + hidden[e + d]);
  }
  for (; i + 2 <= m; i += 2) {
    const a = list[i] * dim, b = list[i + 1] * dim;
    for (let d = 0; d < dim; d++) acc[d] += hidden[a + d] + hidden[b + d];
  }
  if (i < m) {
    const a = list[i] * dim;
    for (let d = 0; d < dim; d++) acc[d] += hidden[a + d];
  }
}
