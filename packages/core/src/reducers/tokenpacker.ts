import type { ReducerDefinition } from "../registry.js";
import { regionPack } from "./regionpack.js";
import { tokenPackerRows } from "../tokenpacker.js";
import type { TokenPackerSpec } from "../types.js";
import { oneNumberShort } from "./text.js";

/**
 * TokenPacker's trained projector packs each S x S region into one token: `tokenpacker:S` (S = 2
 * when left out, the official default and the 144-token checkpoints). The reducer gathers each
 * region's point query and multi-level states into one row; the runtime's TokenPacker projector
 * (a projector file) turns each row into one embedding.
 */
export const tokenPacker: ReducerDefinition<TokenPackerSpec> = {
  kind: "tokenpacker",
  params: ["scale"],
  defaults: { scale: 2 },
  short: oneNumberShort("tokenpacker", "tokenpacker:S", (scale) => ({ kind: "tokenpacker", scale })),
  help: "tokenpacker[:S] (TokenPacker's trained projector packs each S x S region into one token, S = 2 when left out; needs a TokenPacker projector file)",
  format: (s) => `tokenpacker:${s.scale}`,
  needs: () => ({ attention: false, keys: false, multiLevel: true }),
  reduce: (tile, s) => tokenPackerRows(tile, s),
  // One token per region, as region packing.
  count: (tile, s) => regionPack.count(tile, { kind: "regionpack", scale: s.scale })
};
