import type { ReducerDefinition } from "../registry.js";
import type { ReducedTokens, VisionFeatures } from "../types.js";
import { oneNumberShort } from "./text.js";

/**
 * A reducer with one integer parameter over the patch grid, written `kind:N` (pooling's stride,
 * region packing's scale): hidden states only. `count` returns null for an invalid N, so running the
 * reducer gives the error that explains it.
 */
export function gridReducer<Spec extends { kind: string }>(
  kind: Spec["kind"],
  param: Exclude<keyof Spec, "kind"> & string,
  help: string,
  run: (tile: VisionFeatures, n: number) => ReducedTokens,
  count: (rows: number, cols: number, n: number) => number | null
): ReducerDefinition<Spec> {
  const make = (n: number) => ({ kind, [param]: n }) as unknown as Spec;
  const value = (s: Spec) => (s as unknown as Record<string, number>)[param];
  return {
    kind,
    params: [param],
    short: oneNumberShort(kind, `${kind}:S`, make),
    help,
    format: (s) => `${kind}:${value(s)}`,
    needs: () => ({ attention: false, keys: false }),
    reduce: (tile, s) => run(tile, value(s)),
    count: (tile, s) => (Number.isInteger(value(s)) && value(s) >= 1 ? count(tile.grid.rows, tile.grid.cols, value(s)) : null)
  };
}
