import { checkGridOption, patchToken } from "./features.js";
import { windowMeans } from "./kernels/pool.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

export interface PoolOptions {
  /** Side of the square window averaged into one token. */
  stride: number;
}

/**
 * Pooling baseline: drop CLS and average non-overlapping stride x stride windows of the patch grid,
 * row-major over the pooled grid. Edge windows that run past the grid average what they cover.
 * (Spec: DESIGN.md "Reducer specs"; reference/pool.ts is the plain version, kernels/pool.ts the fast one.)
 */
export function poolTokens(f: VisionFeatures, options: PoolOptions): ReducedTokens {
  const stride = checkGridOption(f, "poolTokens", "stride", options?.stride, Math.max);
  return windowMeans(f, poolWindows(f.grid.rows, f.grid.cols, stride, f.clsIndex), "poolTokens");
}

/** The tokens of each stride x stride window, windows row-major over the pooled grid, tokens row by row. */
export function poolWindows(rows: number, cols: number, stride: number, clsIndex: number | null): Int32Array[] {
  const windows: Int32Array[] = [];
  for (let i = 0; i < rows; i += stride) {
    for (let j = 0; j < cols; j += stride) {
      const window = new Int32Array((Math.min(rows, i + stride) - i) * (Math.min(cols, j + stride) - j));
      let m = 0;
      for (let r = i; r < Math.min(rows, i + stride); r++) {
        for (let c = j; c < Math.min(cols, j + stride); c++) window[m++] = patchToken(r * cols + c, clsIndex);
      }
      windows.push(window);
    }
  }
  return windows;
}
