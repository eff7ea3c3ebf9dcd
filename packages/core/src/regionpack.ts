import { LeanVisionError } from "./errors.js";
import { checkFeatures, checkInteger, patchTokenIndices, TokenWriter } from "./features.js";
import { bilinearResize, softmaxInPlace } from "./math.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

export interface RegionPackOptions {
  /** Each scale x scale region of patches becomes one token; must divide both grid sides. */
  scale: number;
}

/**
 * Training-free region-to-point packing (after TokenPacker, without its weights): a bilinear
 * downsample gives one point query per region; each query attends over its region's patches
 * (keys = values = their hidden states) and becomes their attention-weighted sum.
 */
export function regionPack(f: VisionFeatures, options: RegionPackOptions): ReducedTokens {
  checkFeatures(f, "regionPack");
  const { rows, cols } = f.grid;
  const scale = checkInteger("regionPack", "scale", options?.scale, 1, Math.min(rows, cols));
  const regions = checkRegionGrid("regionPack", rows, cols, scale);
  const patchTokens = patchTokenIndices(f);
  const { dim, hidden } = f;
  const queries = bilinearResize(hidden, dim, rows, cols, regions.rows, regions.cols, (r, c) => patchTokens[r * cols + c]);

  const out = new TokenWriter(regions.rows * regions.cols, dim);
  const weights = new Float64Array(scale * scale);
  const invSqrtDim = 1 / Math.sqrt(dim);
  for (let i = 0; i < regions.rows; i++) {
    for (let j = 0; j < regions.cols; j++) {
      const region = regionPatches(i, j, scale, cols).map((p) => patchTokens[p]);
      const q = (i * regions.cols + j) * dim;
      for (let k = 0; k < region.length; k++) {
        const row = region[k] * dim;
        let s = 0;
        for (let d = 0; d < dim; d++) s += queries[q + d] * hidden[row + d];
        weights[k] = s * invSqrtDim;
      }
      softmaxInPlace(weights, region.length);
      const sum = new Float64Array(dim);
      for (let k = 0; k < region.length; k++) {
        const row = region[k] * dim;
        const weight = weights[k];
        for (let d = 0; d < dim; d++) sum[d] += weight * hidden[row + d];
      }
      out.push("packed", Int32Array.from(region)).set(sum);
    }
  }
  return out.finish();
}

/** The grid of regions, or INVALID_OPTIONS when scale does not divide both sides. */
export function checkRegionGrid(reducer: string, rows: number, cols: number, scale: number) {
  if (rows % scale !== 0 || cols % scale !== 0) {
    const fits: number[] = [];
    for (let s = 1; s <= Math.min(rows, cols); s++) if (rows % s === 0 && cols % s === 0) fits.push(s);
    throw new LeanVisionError(
      "INVALID_OPTIONS",
      `${reducer}: scale ${scale} does not divide the ${rows}x${cols} patch grid; use one of ${fits.join(", ")}`
    );
  }
  return { rows: rows / scale, cols: cols / scale };
}

/** Grid positions (row-major over the patch grid) of region (i, j), row by row. */
export function regionPatches(i: number, j: number, scale: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = i * scale; r < (i + 1) * scale; r++) for (let c = j * scale; c < (j + 1) * scale; c++) out.push(r * cols + c);
  return out;
}
