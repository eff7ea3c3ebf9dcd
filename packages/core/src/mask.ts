import { LeanVisionError } from "./errors.js";
import type { ReducedTokens, TileShape, TileTokenProvenance, VisionFeatures } from "./types.js";

/** keepMask value: the patch has no output token of its own (merged into a contextual token, or dropped). */
export const MASK_MERGED_OR_DROPPED = 0;
/** keepMask value: the patch is kept as (or inside) its own output token. */
export const MASK_KEPT = 1;
/** keepMask value: the patch is the target a contextual token was built on. */
export const MASK_CONTEXTUAL_TARGET = 2;

/**
 * Which patches of the grid (rows x cols, row-major) the reduced tokens keep, for drawing them over
 * the image: 0 = not represented by an output token of its own (merged into a contextual token, or
 * dropped), 1 = kept as its own token (dominant, passed-through patch, or a member of a pooled or
 * packed region: with pooling and packing every patch is 1), 2 = the target of a contextual token.
 *
 * Provenance does not say which source of a contextual token is its target; VisionZip picks them
 * deterministically, so they are recovered: the remaining tokens R are the union of the
 * contextual tokens' sources, and with T contextual tokens the targets are R's positions
 * 0, step, 2*step, ... where step = max(1, floor(|R| / T)).
 * Sources are input token indices (`f` says where CLS sits); tokenPacker reports grid positions,
 * so pass `clsIndex: null` with its output.
 */
export function keepMask(
  reduced: Pick<ReducedTokens, "provenance">,
  f: Pick<VisionFeatures, "grid" | "clsIndex" | "numTokens">
): Uint8Array {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_INPUT", `keepMask: ${why}`);
  };
  const rows = f?.grid?.rows, cols = f?.grid?.cols;
  const cls = f?.clsIndex ?? null;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) fail("f.grid must have positive integer rows and cols");
  if (f.numTokens !== rows * cols + (cls === null ? 0 : 1)) {
    fail(`f.numTokens ${f.numTokens} does not match the ${rows}x${cols} grid${cls === null ? "" : " plus CLS"}`);
  }
  if (!reduced || !Array.isArray(reduced.provenance)) fail("reduced must be a ReducedTokens with provenance");

  const mask = new Uint8Array(rows * cols);
  const position = (t: number): number => {
    if (!Number.isInteger(t) || t < 0 || t >= f.numTokens) fail(`source token ${t} is outside [0, ${f.numTokens})`);
    return cls !== null && t > cls ? t - 1 : t;
  };
  let contextualTokens = 0;
  let remaining = 0;
  for (const { kind, sources } of reduced.provenance) {
    if (kind === "contextual") {
      contextualTokens++;
      remaining += sources.length;
      continue;
    }
    if (kind === "cls") continue;
    for (const t of sources) if (t !== cls) mask[position(t)] = MASK_KEPT;
  }
  if (contextualTokens === 0) return mask;

  // The remaining tokens in ascending order: the contextual tokens' sources, merged.
  const all = new Int32Array(remaining);
  let n = 0;
  for (const { kind, sources } of reduced.provenance) {
    if (kind !== "contextual") continue;
    for (const t of sources) {
      position(t); // range check
      all[n++] = t;
    }
  }
  all.sort();
  const step = Math.max(1, Math.floor(remaining / contextualTokens));
  let j = 0;
  for (const { kind, sources } of reduced.provenance) {
    if (kind !== "contextual") continue;
    const target = all[j * step];
    if (j * step >= remaining || !sources.includes(target) || target === cls) {
      fail(`contextual token ${j} does not cover the target VisionZip would have chosen; keepMask reads VisionZip output only`);
    }
    mask[position(target)] = MASK_CONTEXTUAL_TARGET;
    j++;
  }
  return mask;
}

/** keepMask of every tile of an image, from the image's provenance (each entry names its tile). */
export function tileKeepMasks(provenance: TileTokenProvenance[], tiles: TileShape[]): Uint8Array[] {
  if (!Array.isArray(provenance) || !Array.isArray(tiles)) throw new LeanVisionError("INVALID_INPUT", "tileKeepMasks(provenance, tiles): expected two arrays");
  return tiles.map((tile, i) => keepMask({ provenance: provenance.filter((p) => p.tile === i) }, tile));
}
