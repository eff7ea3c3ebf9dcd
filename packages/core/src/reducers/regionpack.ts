import { regionPack as run } from "../regionpack.js";
import type { RegionPackSpec } from "../types.js";
import { gridReducer } from "./grid.js";

/** Training-free region-to-point packing of S x S regions: `regionpack:S`. */
export const regionPack = gridReducer<RegionPackSpec>(
  "regionpack",
  "scale",
  "regionpack:S (each S x S region packed into one point token, e.g. regionpack:2)",
  (tile, scale) => run(tile, { scale }),
  (rows, cols, s) => (rows % s === 0 && cols % s === 0 ? (rows / s) * (cols / s) : null)
);
