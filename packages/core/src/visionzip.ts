import { LeanVisionError } from "./errors.js";
import { checkAttention, checkFeatures, checkInteger, checkKeys, patchTokenIndices, TokenWriter } from "./features.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

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
  const { ranked, scores, hasCls } = ranking;
  const coverage = options?.coverage;
  if (typeof coverage !== "number" || !(coverage > 0 && coverage <= 1)) {
    throw new LeanVisionError("INVALID_OPTIONS", `${name}: coverage must be a number in (0, 1] (got ${coverage})`);
  }
  const min = checkInteger(name, "min", options.min, 1, f.numTokens);
  const max = checkInteger(name, "max", options.max, min, f.numTokens);

  // Sum in rank order, so that with coverage 1 the running sum reaches the total exactly.
  let total = 0;
  for (const p of ranked) total += scores[p];
  let patches = 0;
  for (let mass = 0; patches < ranked.length && mass < coverage * total; patches++) mass += scores[ranked[patches]];

  const chosenDominant = Math.min(max, Math.max(min, patches + (hasCls ? 1 : 0)));
  const reduced = zip(f, ranking, chosenDominant, options.contextual, name);
  return { ...reduced, chosenDominant };
}

/**
 * Dominance score per patch (index into the patch list): with CLS, the CLS row of the attention
 * summed over heads; without CLS, the mean attention the patch receives over heads and queries.
 * Returns the patches ranked by score, highest first, lower index first on ties.
 */
function rankPatches(f: VisionFeatures, reducer: string): PatchRanking {
  checkFeatures(f, reducer);
  checkAttention(f, reducer);
  const n = f.numTokens;
  const patchTokens = patchTokenIndices(f);
  const hasCls = f.clsIndex !== null;
  // Attention each token receives from the scoring queries, summed over heads (contiguous rows).
  const { attention, heads } = f;
  const queries = hasCls ? [f.clsIndex as number] : Array.from({ length: n }, (_, q) => q);
  const received = new Float64Array(n);
  for (let h = 0; h < heads; h++) {
    for (const q of queries) {
      const row = (h * n + q) * n;
      for (let t = 0; t < n; t++) received[t] += attention[row + t];
    }
  }
  const perQuery = hasCls ? 1 : 1 / (heads * n);
  const scores = Float64Array.from(patchTokens, (t) => received[t] * perQuery);
  const ranked = Array.from(patchTokens.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  return { ranked, scores, hasCls, patchTokens };
}

interface PatchRanking {
  /** Token index of each patch, in grid order. */
  patchTokens: Int32Array;
  scores: Float64Array;
  /** Patch positions (into patchTokens), best first. */
  ranked: number[];
  hasCls: boolean;
}

/** Keeps CLS and the best `dominant - 1` patches (`dominant` without CLS), then merges the rest. */
function zip(
  f: VisionFeatures,
  { patchTokens, ranked, hasCls }: PatchRanking,
  dominant: number,
  contextualOption: unknown,
  reducer: string
): ReducedTokens {
  const contextual = checkInteger(reducer, "contextual", contextualOption, 0, f.numTokens);
  const kept = new Uint8Array(f.numTokens);
  for (let i = 0; i < dominant - (hasCls ? 1 : 0); i++) kept[patchTokens[ranked[i]]] = 1;
  if (f.clsIndex !== null) kept[f.clsIndex] = 1;

  const remaining: number[] = [];
  for (let t = 0; t < f.numTokens; t++) if (!kept[t]) remaining.push(t);
  const targets = contextual === 0 ? 0 : Math.min(contextual, remaining.length);

  const out = new TokenWriter(f.numTokens - remaining.length + targets, f.dim);
  if (f.clsIndex !== null) out.copy("cls", f, f.clsIndex);
  for (let t = 0; t < f.numTokens; t++) if (kept[t] && t !== f.clsIndex) out.copy("dominant", f, t);
  if (targets > 0) mergeContextual(f, remaining, contextual, out, reducer);
  return out.finish();
}

/**
 * Contextual tokens: evenly spaced targets among the remaining tokens; every other remaining token
 * joins the target whose unit-length key is most similar. Token = target + mean of its members.
 */
function mergeContextual(
  f: VisionFeatures,
  remaining: number[],
  contextual: number,
  out: TokenWriter,
  reducer: string
): void {
  checkKeys(f, reducer);
  const { keys, keyDim, hidden, dim } = f;
  const unitKey = (t: number): Float64Array => {
    const k = new Float64Array(keyDim);
    let norm = 0;
    for (let i = 0; i < keyDim; i++) norm += keys[t * keyDim + i] ** 2;
    // A zero key matches nothing better than anything else; keep it zero instead of NaN.
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let i = 0; i < keyDim; i++) k[i] = keys[t * keyDim + i] * inv;
    return k;
  };

  const step = Math.max(1, Math.floor(remaining.length / contextual));
  const targetPositions: number[] = [];
  for (let i = 0; i < remaining.length && targetPositions.length < contextual; i += step) targetPositions.push(i);
  const targetKeys = targetPositions.map((i) => unitKey(remaining[i]));
  const members: number[][] = targetPositions.map(() => []);

  let nextTarget = 0;
  for (let i = 0; i < remaining.length; i++) {
    if (targetPositions[nextTarget] === i) {
      nextTarget++;
      continue;
    }
    const key = unitKey(remaining[i]);
    let best = 0;
    let bestSimilarity = -Infinity;
    for (let j = 0; j < targetKeys.length; j++) {
      let s = 0;
      for (let d = 0; d < keyDim; d++) s += key[d] * targetKeys[j][d];
      if (s > bestSimilarity) [best, bestSimilarity] = [j, s];
    }
    members[best].push(remaining[i]);
  }

  targetPositions.forEach((position, j) => {
    const target = remaining[position];
    const group = members[j];
    const row = out.push("contextual", Int32Array.from([target, ...group]).sort());
    const mean = new Float64Array(dim);
    for (const t of group) for (let d = 0; d < dim; d++) mean[d] += hidden[t * dim + d];
    for (let d = 0; d < dim; d++) row[d] = hidden[target * dim + d] + (group.length ? mean[d] / group.length : 0);
  });
}
