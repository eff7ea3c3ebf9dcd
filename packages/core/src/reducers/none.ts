import { reduceNone } from "../none.js";
import type { ReducerDefinition } from "../registry.js";
import type { NoneSpec } from "../types.js";

/** Every patch, as the runtime's own projector gets them (LLaVA drops CLS). */
export const none: ReducerDefinition<NoneSpec> = {
  kind: "none",
  params: [],
  help: "none (every visual token)",
  format: () => "none",
  needs: () => ({ attention: false, keys: false, stock: true }),
  reduce: (tile) => reduceNone(tile),
  count: (tile) => tile.numTokens - (tile.clsIndex === null ? 0 : 1)
};
