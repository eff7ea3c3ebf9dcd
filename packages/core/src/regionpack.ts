import { LeanVisionError } from "./errors.js";
import { checkGridOption } from "./features.js";
import { packRegions } from "./kernels/regionpack.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

export interface RegionPackOptions {
  /** Each scale x scale region of patches becomes one token; must divide both grid sides. */
  scale: number;
}

/**
 * Training-free region-to-point packing (after TokenPacker, without its weights): a bilinear
 * downsample gives one point query per region; each query attends over its region's patches
 * (keys = values = their hidden states) and becomes their attention-weighted sum.
 * (Spec: DESIGN.md "Reducer specs"; reference/regionpack.ts is the plain version, kernels/regionpack.ts the fast one.)
 */
export function regionPack(f: VisionFeatures, options: RegionPackOptions): ReducedTokens {
  const scale = checkGridOption(f, "regionPack", "scale", options?.scale, Math.min);
  return packRegions(f, scale, checkRegionGrid("regionPack", f.grid.rows, f.grid.cols, scale));
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
