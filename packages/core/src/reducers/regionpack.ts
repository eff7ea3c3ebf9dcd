import type { ReducerDefinition } from "../registry.js";
import { regionPack as run } from "../regionpack.js";
import type { RegionPackSpec } from "../types.js";
import { oneNumberShort } from "./text.js";

/** Training-free region-to-point packing of S x S regions: `regionpack:S`. */
export const regionPack: ReducerDefinition<RegionPackSpec> = {
  kind: "regionpack",
  params: ["scale"],
  short: oneNumberShort("regionpack", "regionpack:S", (scale) => ({ kind: "regionpack", scale })),
  help: "regionpack:S (each S x S region packed into one point token, e.g. regionpack:2)",
  format: (s) => `regionpack:${s.scale}`,
  needs: () => ({ attention: false, keys: false }),
  reduce: (tile, s) => run(tile, s),
  count(tile, s) {
    const { rows, cols } = tile.grid;
    // An invalid scale counts as unknown: running the reducer gives the error that explains it.
    return Number.isInteger(s.scale) && s.scale >= 1 && rows % s.scale === 0 && cols % s.scale === 0 ? (rows / s.scale) * (cols / s.scale) : null;
  }
};
