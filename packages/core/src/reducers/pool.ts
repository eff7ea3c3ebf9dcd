import type { ReducerDefinition } from "../registry.js";
import { poolTokens } from "../pool.js";
import type { PoolSpec } from "../types.js";
import { oneNumberShort } from "./text.js";

/** Average pooling of S x S windows: `pool:S`. */
export const pool: ReducerDefinition<PoolSpec> = {
  kind: "pool",
  params: ["stride"],
  short: oneNumberShort("pool", "pool:S", (stride) => ({ kind: "pool", stride })),
  help: "pool:S (average S x S windows, e.g. pool:2)",
  format: (s) => `pool:${s.stride}`,
  needs: () => ({ attention: false, keys: false }),
  reduce: (tile, s) => poolTokens(tile, s),
  count(tile, s) {
    const { rows, cols } = tile.grid;
    const valid = Number.isInteger(s.stride) && s.stride >= 1 && s.stride <= Math.max(rows, cols);
    return valid ? Math.ceil(rows / s.stride) * Math.ceil(cols / s.stride) : null;
  }
};
