// VisionZip (spec: DESIGN.md "Reducer specs"; reference/visionzip.ts is the same spec as plain
// code). Here: options and input checks, the dominance scores, the dominant pick and the output
// order; the contextual merge and the no-CLS column sums run in kernels/visionzip.ts (SIMD or
// unrolled float64), which the tests hold to the reference version.
import { LeanVisionError } from "./errors.js";
import { checkAttention, checkFeatures, checkInteger, checkOutputFinite, nonFiniteError, patchToken, single } from "./features.js";
import { columnSums, contextualTokens } from "./kernels/visionzip.js";
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "./types.js";

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
