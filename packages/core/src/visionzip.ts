// VisionZip (spec: DESIGN.md "Reducer specs"; reference/visionzip.ts is the same spec as plain
// code). Here: options and input checks, the dominance scores, the dominant pick and the output
// order; the contextual merge and the no-CLS column sums run in kernels/visionzip.ts (SIMD or
// unrolled float64), which the tests hold to the reference version.
import { LeanVisionError } from "./errors.js";
import { checkAttention, checkFeatures, checkInteger, checkOutputFinite, nonFiniteError, patchToken, single } from "./features.js";
import { columnSums, contextualTokens } from "./kernels/visionzip.js";
import type { ImageFeatures, ReducedImage, ReducedTokens, TileTokenProvenance, TokenProvenance, VisionFeatures } from "./types.js";

export interface VisionZipOptions {
  /** Dominant tokens to keep, counting the CLS token when there is one (paper: 54, 108, 162). */
  dominant: number;
  /** Contextual tokens merged from the rest (paper: 10, 20, 30); 0 for none. */
  contextual: number;
}

export interface AdaptiveVisionZipOptions {
  /** Fraction of the patches' dominance score mass the kept patches must reach, in (0, 1]. */
  coverage: number;
  /** Bounds on the chosen dominant count (same units as VisionZipOptions.dominant). */
  min: number;
  max: number;
  contextual: number;
}

/**
 * VisionZip (text-agnostic): keep the patches the feature layer attends to most, then merge the
 * rest into a few contextual tokens. Output: CLS, dominant patches (ascending), contextual tokens.
 */
export function visionZip(f: VisionFeatures, options: VisionZipOptions): ReducedTokens {
  const ranking = rankPatches(f, "visionZip");
  const dominant = checkInteger("visionZip", "dominant", options?.dominant, 1, f.numTokens);
  return zip(f, ranking, dominant, options.contextual, "visionZip");
}

/**
 * VisionZip with a per-image budget: the dominant count is the smallest one whose patches reach
 * `coverage` of the total dominance score, clamped to [min, max]. Reports it as chosenDominant.
 */
export function visionZipAdaptive(f: VisionFeatures, options: AdaptiveVisionZipOptions): ReducedTokens {
  const name = "visionZipAdaptive";
  const ranking = rankPatches(f, name);
  const { sorted, hasCls } = ranking;
  const coverage = options?.coverage;
  if (typeof coverage !== "number" || !(coverage > 0 && coverage <= 1)) {
    throw new LeanVisionError("INVALID_OPTIONS", `${name}: coverage must be a number in (0, 1] (got ${coverage})`);
  }
  const min = checkInteger(name, "min", options.min, 1, f.numTokens);
  const max = checkInteger(name, "max", options.max, min, f.numTokens);

  // Sum in rank order (sorted is ascending: read it backwards), so that with coverage 1 the
  // running sum reaches the total exactly. Tied scores are equal, so their order does not matter.
  const count = sorted.length;
  let total = 0;
  for (let i = count - 1; i >= 0; i--) total += sorted[i];
  let patches = 0;
  for (let mass = 0; patches < count && mass < coverage * total; patches++) mass += sorted[count - 1 - patches];

  const chosenDominant = Math.min(max, Math.max(min, patches + (hasCls ? 1 : 0)));
  const reduced = zip(f, ranking, chosenDominant, options.contextual, name);
  return { ...reduced, chosenDominant };
}

interface PatchRanking {
  /** Dominance score of each patch, in grid order. */
  scores: Float64Array;
  /** The same scores, ascending. */
  sorted: Float64Array;
  hasCls: boolean;
}

/**
 * Dominance score per patch (index into the patch list): with CLS, the CLS row of the attention
 * summed over heads; without CLS, the mean attention the patch receives over heads and queries.
 */
function rankPatches(f: VisionFeatures, reducer: string): PatchRanking {
  checkFeatures(f, reducer);
  checkAttention(f, reducer);
  const n = f.numTokens;
  const cls = f.clsIndex;
  // Attention each token receives from the scoring queries, summed over heads.
  const received = new Float64Array(n);
  let perQuery = 1;
  if (f.attention === undefined) {
    // Computed by the runtime (e.g. from the feature layer's queries and keys, flash attention on).
    const scores = f.attentionScores;
    for (let t = 0; t < n; t++) received[t] = scores[t];
    for (let t = 0; t < n; t++) if (received[t] * 0 !== 0) throw nonFiniteError(reducer, "attention", received[t], `attentionScores[${t}]`);
  } else {
    const { attention, heads } = f;
    if (cls !== null) {
      for (let h = 0; h < heads; h++) {
        const row = (h * n + cls) * n;
        for (let t = 0; t < n; t++) received[t] += attention[row + t];
      }
    } else {
      columnSums(attention, heads * n, n, received);
      perQuery = 1 / (heads * n);
    }
    // Every attention value read went into one of these sums: a NaN or ±Infinity shows up here.
    for (let t = 0; t < n; t++) {
      if (received[t] * 0 !== 0) throw attentionError(f, t, reducer);
    }
  }

  const scores = new Float64Array(n - (cls === null ? 0 : 1));
  for (let p = 0; p < scores.length; p++) scores[p] = received[patchToken(p, cls)] * perQuery;
  return { scores, sorted: scores.slice().sort(), hasCls: cls !== null };
}

/** NON_FINITE naming the first bad attention value that went into token t's score. */
function attentionError(f: VisionFeatures & { attention: Float32Array; heads: number }, t: number, reducer: string) {
  const n = f.numTokens;
  for (let h = 0; h < f.heads; h++) {
    for (let q = 0; q < n; q++) {
      if (f.clsIndex !== null && q !== f.clsIndex) continue;
      const v = f.attention[(h * n + q) * n + t];
      if (!Number.isFinite(v)) return nonFiniteError(reducer, "attention", v, `head ${h}, query token ${q}, key token ${t}`);
    }
  }
  return nonFiniteError(reducer, "attention", NaN, `the scores of key token ${t}`);
}

/**
 * Marks the best k patches (highest score, lower index first on ties) in `kept`: everything above
 * the k-th largest score, then as many patches tied with it as fit, lowest index first.
 */
function markTop({ scores, sorted }: PatchRanking, k: number, kept: Uint8Array): void {
  if (k <= 0) return;
  const count = scores.length;
  const threshold = sorted[count - k];
  let above = 0;
  for (let i = count - 1; i >= 0 && sorted[i] > threshold; i--) above++;
  let ties = k - above;
  for (let p = 0; p < count; p++) {
    const s = scores[p];
    if (s > threshold) kept[p] = 1;
    else if (s === threshold && ties > 0) {
      kept[p] = 1;
      ties--;
    }
  }
}

/** Keeps CLS and the best `dominant - 1` patches (`dominant` without CLS), then merges the rest. */
function zip(
  f: VisionFeatures,
  ranking: PatchRanking,
  dominant: number,
  contextualOption: unknown,
  reducer: string
): ReducedTokens {
  // Like the official code, a budget above the tokens left makes one contextual token per token left.
  const contextual = checkInteger(reducer, "contextual", contextualOption, 0, Number.MAX_SAFE_INTEGER);
  const cls = f.clsIndex;
  const patches = ranking.scores.length;
  const kept = new Uint8Array(patches);
  markTop(ranking, dominant - (cls === null ? 0 : 1), kept);

  const { hidden, dim } = f;
  let keptPatches = 0;
  for (let p = 0; p < patches; p++) keptPatches += kept[p];
  const remaining = new Int32Array(patches - keptPatches);
  const targets = contextual === 0 ? 0 : Math.min(contextual, remaining.length);
  const numTokens = (cls === null ? 0 : 1) + keptPatches + targets;
  const out = new Float32Array(numTokens * dim);
  const provenance: TokenProvenance[] = [];

  if (cls !== null) {
    out.set(hidden.subarray(cls * dim, (cls + 1) * dim), 0);
    provenance.push({ kind: "cls", sources: single(cls) });
  }
  for (let p = 0, r = 0; p < patches; p++) {
    const t = patchToken(p, cls);
    if (kept[p]) {
      out.set(hidden.subarray(t * dim, (t + 1) * dim), provenance.length * dim);
      provenance.push({ kind: "dominant", sources: single(t) });
    } else remaining[r++] = t;
  }
  if (targets > 0) contextualTokens(f, remaining, contextual, targets, out, provenance, reducer);
  const reduced: ReducedTokens = { hidden: out, numTokens, dim, provenance };
  checkOutputFinite(f, reduced, reducer);
  return reduced;
}

/**
 * VisionZip's LLaVA-NeXT order for a multi-tile image whose tiles were each reduced as a single
 * image (official VisionZip, visionzip/llava_arch.py, prepare_inputs_labels_for_multimodal_visionzip
 * and restore_image_features_sorted):
 *  1. the overview tile's tokens, in single-tile order (CLS, dominant patches, contextual tokens);
 *  2. the high-resolution tiles' dominant patches, put back on the combined high-resolution grid
 *     (tileGrid.rows x grid.rows by tileGrid.cols x grid.cols) and read in raster order across tiles;
 *  3. every high-resolution tile's CLS, in tile order;
 *  4. every high-resolution tile's contextual tokens, tile after tile.
 * No image newline and no unpadding (the official code builds the newline but never inserts it). With
 * no contextual tokens there are none (the official `[:, -0:]` would repeat every token). An image
 * without high-resolution tiles is its one tile's reduction, unchanged.
 */
export function visionZipNextOrder(image: ImageFeatures, reduced: ReducedTokens[]): ReducedImage {
  const { rows: tileRows, cols: tileCols } = image.tileGrid;
  const dim = reduced[0].dim;
  if (reduced.length === 1) {
    return { hidden: reduced[0].hidden, numTokens: reduced[0].numTokens, dim, provenance: reduced[0].provenance.map((p) => ({ ...p, tile: 0 })), tiles: reduced };
  }
  // Output rows as (tile, row of that tile's reduction), in output order.
  const picks: Array<[number, number]> = [];
  reduced[0].provenance.forEach((_, r) => picks.push([0, r]));
  // Dominant patches of the high-resolution tiles on the combined grid: key = global raster index.
  const { rows: gr, cols: gc } = image.tiles[1].grid;
  const dominant: Array<[number, number, number]> = []; // [global raster index, tile, row]
  for (let tile = 1; tile < reduced.length; tile++) {
    const f = image.tiles[tile];
    if (f.grid.rows !== gr || f.grid.cols !== gc) {
      throw new LeanVisionError("INVALID_FEATURES", `visionZip (NeXT order): high-resolution tiles must share one patch grid (tile ${tile} is ${f.grid.rows}x${f.grid.cols}, tile 1 ${gr}x${gc})`);
    }
    const tr = Math.floor((tile - 1) / tileCols);
    const tc = (tile - 1) % tileCols;
    reduced[tile].provenance.forEach((p, row) => {
      if (p.kind !== "dominant") return;
      const t = p.sources[0];
      const patch = f.clsIndex !== null && t > f.clsIndex ? t - 1 : t;
      const y = tr * gr + Math.floor(patch / gc);
      const x = tc * gc + (patch % gc);
      dominant.push([y * tileCols * gc + x, tile, row]);
    });
  }
  dominant.sort((a, b) => a[0] - b[0]);
  for (const [, tile, row] of dominant) picks.push([tile, row]);
  for (const kind of ["cls", "contextual"] as const) {
    for (let tile = 1; tile < reduced.length; tile++) {
      reduced[tile].provenance.forEach((p, row) => p.kind === kind && picks.push([tile, row]));
    }
  }
  const expected = reduced.reduce((n, t) => n + t.numTokens, 0);
  if (picks.length !== expected || tileRows * tileCols !== reduced.length - 1) {
    throw new LeanVisionError("INVALID_FEATURES", "visionZip (NeXT order): every high-resolution token must be CLS, dominant or contextual, over a full tile grid");
  }
  const hidden = new Float32Array(expected * dim);
  const provenance: TileTokenProvenance[] = [];
  picks.forEach(([tile, row], i) => {
    hidden.set(reduced[tile].hidden.subarray(row * dim, (row + 1) * dim), i * dim);
    provenance.push({ ...reduced[tile].provenance[row], tile });
  });
  return { hidden, numTokens: expected, dim, provenance, tiles: reduced };
}

/**
 * The adaptive budget over a whole image. Rule: every patch of every tile is weighed by its share of
 * its own tile's dominance score mass (so each tile's mass counts 1); the image keeps the fewest
 * patches, largest shares first, that together reach `coverage` of the image's mass (coverage x
 * tiles). Equivalently, each tile keeps its patches whose share is at least one common threshold.
 * A tile whose attention is concentrated is covered by a few patches (its tail shares are tiny); a
 * tile whose attention is spread has many mid-sized shares and gets many more: the budget goes where
 * the mass is spread, and no other split reaches the same total mass with fewer tokens. Each tile's
 * count (CLS included) is then clamped to [min, max]; contextual tokens are per tile. A single tile
 * is exactly visionZipAdaptive. Tiles come back in VisionZip's NeXT order (visionZipNextOrder).
 */
export function visionZipAdaptiveImage(image: ImageFeatures, options: AdaptiveVisionZipOptions): ReducedImage {
  if (image.tiles.length === 1) return visionZipNextOrder(image, [visionZipAdaptive(image.tiles[0], options)]);
  const name = "visionZipAdaptive";
  const coverage = options?.coverage;
  if (typeof coverage !== "number" || !(coverage > 0 && coverage <= 1)) {
    throw new LeanVisionError("INVALID_OPTIONS", `${name}: coverage must be a number in (0, 1] (got ${coverage})`);
  }
  const rankings = image.tiles.map((f) => rankPatches(f, name));
  // Every patch's share of its tile's mass; shares sorted descending (ties: lower tile, then lower patch).
  const shares: Array<[number, number]> = []; // [share, tile]
  rankings.forEach(({ scores }, tile) => {
    let total = 0;
    for (let p = scores.length - 1; p >= 0; p--) total += scores[p];
    for (let p = 0; p < scores.length; p++) shares.push([total > 0 ? scores[p] / total : 0, tile]);
  });
  shares.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const counts = new Array<number>(image.tiles.length).fill(0);
  const target = coverage * image.tiles.length;
  for (let i = 0, mass = 0; i < shares.length && mass < target; i++) {
    mass += shares[i][0];
    counts[shares[i][1]]++;
  }
  const reduced = image.tiles.map((f, tile) => {
    const min = checkInteger(name, "min", options.min, 1, f.numTokens);
    const max = checkInteger(name, "max", options.max, min, f.numTokens);
    const chosenDominant = Math.min(max, Math.max(min, counts[tile] + (rankings[tile].hasCls ? 1 : 0)));
    return { ...zip(f, rankings[tile], chosenDominant, options.contextual, name), chosenDominant };
  });
  return visionZipNextOrder(image, reduced);
}
