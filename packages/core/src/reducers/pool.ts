import { poolTokens } from "../pool.js";
import type { PoolSpec } from "../types.js";
import { gridReducer } from "./grid.js";

/** Average pooling of S x S windows: `pool:S`. */
export const pool = gridReducer<PoolSpec>(
  "pool",
  "stride",
  "pool:S (average S x S windows, e.g. pool:2)",
  (tile, stride) => poolTokens(tile, { stride }),
  (rows, cols, s) => (s <= Math.max(rows, cols) ? Math.ceil(rows / s) * Math.ceil(cols / s) : null)
);
