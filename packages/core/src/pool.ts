import { checkFeatures, checkInteger, patchTokenIndices, TokenWriter } from "./features.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

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
  const patchTokens = patchTokenIndices(f);
  const outRows = Math.ceil(rows / stride);
  const outCols = Math.ceil(cols / stride);
  const out = new TokenWriter(outRows * outCols, f.dim);

  for (let i = 0; i < outRows; i++) {
    for (let j = 0; j < outCols; j++) {
      const window: number[] = [];
      for (let r = i * stride; r < Math.min(rows, (i + 1) * stride); r++) {
        for (let c = j * stride; c < Math.min(cols, (j + 1) * stride); c++) window.push(patchTokens[r * cols + c]);
      }
      const row = out.push("pooled", Int32Array.from(window));
      const sum = new Float64Array(f.dim);
      for (const t of window) for (let d = 0; d < f.dim; d++) sum[d] += f.hidden[t * f.dim + d];
      for (let d = 0; d < f.dim; d++) row[d] = sum[d] / window.length;
    }
  }
  return out.finish();
}
