import { LeanVisionError } from "./errors.js";
import {
  checkAttention,
  checkFeatures,
  checkInteger,
  checkKeys,
  checkOutputFinite,
  nonFiniteError,
  patchToken,
  single
} from "./features.js";
import { sumRows } from "./math.js";
import { simd, stage, type SimdKernels } from "./simd.js";
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
  const { attention, heads } = f;
  // Attention each token receives from the scoring queries, summed over heads.
  const received = new Float64Array(n);
  if (cls !== null) {
    for (let h = 0; h < heads; h++) {
      const row = (h * n + cls) * n;
      for (let t = 0; t < n; t++) received[t] += attention[row + t];
    }
  } else {
    columnSums(attention, heads * n, n, received);
  }
  // Every attention value read went into one of these sums: a NaN or ±Infinity shows up here.
  for (let t = 0; t < n; t++) {
    if (received[t] * 0 !== 0) throw attentionError(f, t, reducer);
  }

  const scores = new Float64Array(n - (cls === null ? 0 : 1));
  const perQuery = cls === null ? 1 / (heads * n) : 1;
  for (let p = 0; p < scores.length; p++) scores[p] = received[patchToken(p, cls)] * perQuery;
  return { scores, sorted: scores.slice().sort(), hasCls: cls !== null };
}

/** acc[t] += sum over the rows of a[rows x n] of a[row, t]: one contiguous pass, eight rows at a time. */
function columnSums(a: Float32Array, rows: number, n: number, acc: Float64Array): void {
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    const o0 = r * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n, o4 = o3 + n, o5 = o4 + n, o6 = o5 + n, o7 = o6 + n;
    for (let t = 0; t < n; t++) {
      acc[t] += a[o0 + t] + a[o1 + t] + (a[o2 + t] + a[o3 + t]) + (a[o4 + t] + a[o5 + t] + (a[o6 + t] + a[o7 + t]));
    }
  }
  for (; r < rows; r++) {
    const o = r * n;
    for (let t = 0; t < n; t++) acc[t] += a[o + t];
  }
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
  if (targets > 0) mergeContextual(f, remaining, contextual, targets, out, provenance, reducer);
  const reduced: ReducedTokens = { hidden: out, numTokens, dim, provenance };
  checkOutputFinite(f, reduced, reducer);
  return reduced;
}

/**
 * Contextual tokens: evenly spaced targets among the remaining tokens; every other remaining token
 * joins the target whose unit-length key is most similar. Token = target + mean of its members.
 * Appends the tokens to `out` after the rows `provenance` already lists.
 */
function mergeContextual(
  f: VisionFeatures,
  remaining: Int32Array,
  contextual: number,
  targets: number,
  out: Float32Array,
  provenance: TokenProvenance[],
  reducer: string
): void {
  checkKeys(f, reducer);
  const { keys, keyDim, hidden, dim } = f;
  const count = remaining.length;
  const step = Math.max(1, Math.floor(count / contextual));

  // Unit-length keys of the targets. A zero key matches nothing better than anything else: it
  // stays zero instead of NaN.
  const blocks = Math.ceil(targets / 4);
  const units = new Float64Array(blocks * 4 * keyDim); // zero-padded to whole blocks of four
  for (let j = 0; j < targets; j++) {
    const t = remaining[j * step];
    const k = t * keyDim;
    let norm = 0;
    for (let d = 0; d < keyDim; d++) norm += keys[k + d] * keys[k + d];
    if (norm * 0 !== 0) throw keyError(f, t, reducer);
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < keyDim; d++) units[j * keyDim + d] = keys[k + d] * inv;
  }

  // Every other token joins the target with the largest dot product between its key and the
  // target's unit key: the token's own key length scales every candidate alike, so it is not
  // normalised (only checked). Two tokens against four targets per pass over the keys.
  const group = new Int32Array(count);
  const sizes = new Int32Array(targets);
  const others = new Int32Array(count - targets);
  for (let i = 0, m = 0; i < count; i++) {
    if (i % step === 0 && i / step < targets) {
      group[i] = i / step;
      sizes[i / step]++;
    } else others[m++] = i;
  }
  // With SIMD the hidden states, keys and unit target keys go to the kernels' memory (layout after
  // the hidden states: one accumulator row, the unit keys, the keys, the similarities).
  const k = dim % 4 === 0 ? simd() : null;
  const dots = k !== null && keyDim % 4 === 0;
  const unitsAt = dim, keysAt = unitsAt + targets * keyDim, normsAt = keysAt + keys.length, simAt = normsAt + f.numTokens;
  const staged = k && stage(k, hidden, dots ? simAt + targets + 4 : dim, dim);
  if (dots && staged) {
    const { mem, extra } = staged;
    mem.set(units.subarray(0, targets * keyDim), extra + unitsAt); // rounded to float32
    mem.set(keys, extra + keysAt);
    k.norms((extra + keysAt) * 4, f.numTokens, keyDim * 4, (extra + normsAt) * 4);
    matchByDots(keys, keyDim, units, targets, remaining, others, group, f, reducer, k, mem, extra + keysAt, extra + unitsAt, extra + normsAt, extra + simAt);
  }
  for (let x = 0; x < (dots ? 0 : others.length); x += 2) {
    const i0 = others[x], i1 = others[Math.min(x + 1, others.length - 1)];
    const k0 = remaining[i0] * keyDim, k1 = remaining[i1] * keyDim;
    let norm0 = 0, norm1 = 0;
    for (let d = 0; d < keyDim; d++) {
      norm0 += keys[k0 + d] * keys[k0 + d];
      norm1 += keys[k1 + d] * keys[k1 + d];
    }
    if (norm0 * 0 !== 0) throw keyError(f, remaining[i0], reducer);
    if (norm1 * 0 !== 0) throw keyError(f, remaining[i1], reducer);
    let best0 = 0, best1 = 0;
    let top0 = -Infinity, top1 = -Infinity;
    for (let j = 0; j < targets; j += 4) {
      const u0 = j * keyDim, u1 = u0 + keyDim, u2 = u1 + keyDim, u3 = u2 + keyDim;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
      for (let d = 0; d < keyDim; d++) {
        const x0 = keys[k0 + d], x1 = keys[k1 + d];
        const v0 = units[u0 + d], v1 = units[u1 + d], v2 = units[u2 + d], v3 = units[u3 + d];
        a0 += x0 * v0;
        a1 += x0 * v1;
        a2 += x0 * v2;
        a3 += x0 * v3;
        b0 += x1 * v0;
        b1 += x1 * v1;
        b2 += x1 * v2;
        b3 += x1 * v3;
      }
      // First best wins ties; padding lanes (j + lane >= targets) never compete.
      if (a0 > top0) (best0 = j), (top0 = a0);
      if (b0 > top1) (best1 = j), (top1 = b0);
      if (j + 1 < targets) {
        if (a1 > top0) (best0 = j + 1), (top0 = a1);
        if (b1 > top1) (best1 = j + 1), (top1 = b1);
      }
      if (j + 2 < targets) {
        if (a2 > top0) (best0 = j + 2), (top0 = a2);
        if (b2 > top1) (best1 = j + 2), (top1 = b2);
      }
      if (j + 3 < targets) {
        if (a3 > top0) (best0 = j + 3), (top0 = a3);
        if (b3 > top1) (best1 = j + 3), (top1 = b3);
      }
    }
    group[i0] = best0;
    group[i1] = best1;
  }
  for (let x = 0; x < others.length; x++) sizes[group[others[x]]]++;

  // Members of each group in ascending token order (a counting sort), the target among them.
  const starts = new Int32Array(targets + 1);
  for (let j = 0; j < targets; j++) starts[j + 1] = starts[j] + sizes[j];
  const members = new Int32Array(count);
  const fill = starts.slice(0, targets);
  for (let i = 0; i < count; i++) members[fill[group[i]]++] = remaining[i];

  // Target + mean of the members: with SIMD summed in float32 inside the kernels' memory, else in
  // float64 here.
  const sum = new Float64Array(staged ? 0 : dim);
  const rows = new Int32Array(count);
  for (let j = 0; j < targets; j++) {
    const target = remaining[j * step];
    let m = 0;
    for (let i = starts[j]; i < starts[j + 1]; i++) if (members[i] !== target) rows[m++] = members[i];
    const o = provenance.length * dim;
    const h = target * dim;
    if (m === 0) {
      out.set(hidden.subarray(h, h + dim), o);
    } else if (k && staged) {
      const n = dim * 4, dst = staged.extra * 4;
      const at = (x: number) => rows[x] * n;
      let x = 0;
      if (m >= 4) {
        k.sum4(dst, at(0), at(1), at(2), at(3), n, 1);
        x = 4;
      } else {
        k.axpy(dst, at(0), staged.zero * 4, n, 0); // dst = first member
        x = 1;
      }
      for (; x + 4 <= m; x += 4) k.acc4(dst, at(x), at(x + 1), at(x + 2), at(x + 3), n);
      for (; x < m; x++) k.acc1(dst, at(x), n);
      k.axpy(dst, h * 4, dst, n, 1 / m);
      out.set(staged.mem.subarray(staged.extra, staged.extra + dim), o);
    } else {
      sumRows(hidden, dim, rows, m, sum);
      const inv = 1 / m;
      for (let d = 0; d < dim; d++) out[o + d] = hidden[h + d] + sum[d] * inv;
    }
    provenance.push({ kind: "contextual", sources: members.slice(starts[j], starts[j + 1]) });
  }
}

/**
 * The SIMD matching: float32 similarities of each token's key with every unit target key, then
 * the same choice as the float64 loop. Float32 dots are off by far less than `slack` (1e-5 of the
 * key's length, against ~64 x 6e-8 for 64-dim keys); when other targets come within it of the best,
 * those few are recomputed in float64 in the plain loop's order, so near-ties go the same way.
 */
function matchByDots(
  keys: Float32Array,
  keyDim: number,
  units: Float64Array,
  targets: number,
  remaining: Int32Array,
  others: Int32Array,
  group: Int32Array,
  f: VisionFeatures & { keys: Float32Array; keyDim: number },
  reducer: string,
  k: SimdKernels,
  mem: Float32Array,
  keysAt: number,
  unitsAt: number,
  normsAt: number,
  simAt: number
): void {
  const n = keyDim * 4;
  for (let x = 0; x < others.length; x++) {
    const i = others[x];
    const kk = remaining[i] * keyDim;
    let norm = mem[normsAt + remaining[i]];
    if (norm * 0 !== 0) {
      // Non-finite in float32: a bad key, or one so long its square overflows float32 only.
      norm = 0;
      for (let d = 0; d < keyDim; d++) norm += keys[kk + d] * keys[kk + d];
      if (norm * 0 !== 0) throw keyError(f, remaining[i], reducer);
    }
    k.dots((keysAt + kk) * 4, unitsAt * 4, targets, n, simAt * 4);
    let best = 0;
    let top = mem[simAt];
    for (let j = 1; j < targets; j++) if (mem[simAt + j] > top) (best = j), (top = mem[simAt + j]);
    const slack = 1e-5 * Math.sqrt(norm);
    let close = false;
    for (let j = 0; j < targets; j++) if (j !== best && mem[simAt + j] >= top - slack) close = true;
    if (close) {
      let exact = -Infinity;
      for (let j = 0; j < targets; j++) {
        if (mem[simAt + j] < top - slack) continue;
        let s = 0;
        for (let d = 0; d < keyDim; d++) s += keys[kk + d] * units[j * keyDim + d];
        if (s > exact) (best = j), (exact = s);
      }
    }
    group[i] = best;
  }
}

/** NON_FINITE naming the first bad value of token t's key. */
function keyError(f: VisionFeatures & { keys: Float32Array; keyDim: number }, t: number, reducer: string) {
  for (let d = 0; d < f.keyDim; d++) {
    const v = f.keys[t * f.keyDim + d];
    if (!Number.isFinite(v)) return nonFiniteError(reducer, "keys", v, `token ${t}, dim ${d}`);
  }
  return nonFiniteError(reducer, "keys", Infinity, `token ${t} (its squared length overflows)`);
}
