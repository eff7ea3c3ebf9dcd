// VisionZip's fast paths, apart from the algorithm (visionzip.ts runs it; reference/visionzip.ts
// is the plain version of the whole spec, and the tests hold these paths to it):
// - columnSums: the attention each token receives over all queries (scoring without CLS), eight
//   rows of the attention per pass.
// - contextualTokens (spec step 3): matching every remaining token to a target, with the SIMD
//   kernels (float32 similarities, near-ties recomputed in float64) or in float64 two tokens
//   against four targets per pass; then target + mean of its members, summed with the SIMD
//   kernels (float32) or in float64 (sumRows).
import { checkKeys, keyNonFiniteError } from "../features.js";
import { sumRows } from "../math.js";
import { simd, stage, type SimdKernels } from "../simd.js";
import type { TokenProvenance, VisionFeatures } from "../types.js";
import { simdSumRows } from "./means.js";

type WithKeys = VisionFeatures & { keys: Float32Array; keyDim: number };

/** What a matching path reads and writes: group[i] = the target of remaining[i], for every i in `others`. */
interface Matching {
  f: WithKeys;
  /** Unit target keys, float64, zero-padded to whole blocks of four targets. */
  units: Float64Array;
  targets: number;
  remaining: Int32Array;
  /** Positions in `remaining` of the tokens that are not targets. */
  others: Int32Array;
  group: Int32Array;
  reducer: string;
}

/** acc[t] += sum over the rows of a[rows x n] of a[row, t]: one contiguous pass, eight rows at a time. */
export function columnSums(a: Float32Array, rows: number, n: number, acc: Float64Array): void {
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

/**
 * Contextual tokens: evenly spaced targets among the remaining tokens; every other remaining token
 * joins the target whose unit-length key is most similar. Token = target + mean of its members.
 * Appends the tokens to `out` after the rows `provenance` already lists.
 */
export function contextualTokens(
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
  const units = unitTargetKeys(f, remaining, step, targets, reducer);

  // Every other token joins the target with the largest dot product between its key and the
  // target's unit key: the token's own key length scales every candidate alike, so it is not
  // normalised (only checked).
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
  // the hidden states: one accumulator row, the unit keys, the keys, their squared lengths, the similarities).
  const k = dim % 4 === 0 ? simd() : null;
  const dots = k !== null && keyDim % 4 === 0;
  const unitsAt = dim, keysAt = unitsAt + targets * keyDim, normsAt = keysAt + keys.length, simAt = normsAt + f.numTokens;
  const staged = k && stage(k, hidden, dots ? simAt + targets + 4 : dim, dim);
  const matching: Matching = { f, units, targets, remaining, others, group, reducer };
  if (dots && staged) {
    const { mem, extra } = staged;
    mem.set(units.subarray(0, targets * keyDim), extra + unitsAt); // rounded to float32
    mem.set(keys, extra + keysAt);
    k.norms((extra + keysAt) * 4, f.numTokens, keyDim * 4, (extra + normsAt) * 4);
    matchByDots(matching, k, mem, { keys: extra + keysAt, units: extra + unitsAt, norms: extra + normsAt, sims: extra + simAt });
  } else {
    matchFloat64(matching);
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
      simdSumRows(k, dst, rows, m, n, staged.zero * 4);
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
 * Unit-length keys of the targets (remaining[j * step]), float64, zero-padded to whole blocks of
 * four. A zero key matches nothing better than anything else: it stays zero instead of NaN.
 */
function unitTargetKeys(f: WithKeys, remaining: Int32Array, step: number, targets: number, reducer: string): Float64Array {
  const { keys, keyDim } = f;
  const units = new Float64Array(Math.ceil(targets / 4) * 4 * keyDim);
  for (let j = 0; j < targets; j++) {
    const t = remaining[j * step];
    const k = t * keyDim;
    let norm = 0;
    for (let d = 0; d < keyDim; d++) norm += keys[k + d] * keys[k + d];
    if (norm * 0 !== 0) throw keyNonFiniteError(f, t, reducer);
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < keyDim; d++) units[j * keyDim + d] = keys[k + d] * inv;
  }
  return units;
}

/** The float64 matching: two tokens against four targets per pass over the keys; first best wins ties. */
function matchFloat64({ f, units, targets, remaining, others, group, reducer }: Matching): void {
  const { keys, keyDim } = f;
  for (let x = 0; x < others.length; x += 2) {
    const i0 = others[x], i1 = others[Math.min(x + 1, others.length - 1)];
    const k0 = remaining[i0] * keyDim, k1 = remaining[i1] * keyDim;
    let norm0 = 0, norm1 = 0;
    for (let d = 0; d < keyDim; d++) {
      norm0 += keys[k0 + d] * keys[k0 + d];
      norm1 += keys[k1 + d] * keys[k1 + d];
    }
    if (norm0 * 0 !== 0) throw keyNonFiniteError(f, remaining[i0], reducer);
    if (norm1 * 0 !== 0) throw keyNonFiniteError(f, remaining[i1], reducer);
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
}

/**
 * The SIMD matching: float32 similarities of each token's key with every unit target key, then
 * the same choice as the float64 loop. Float32 dots are off by far less than `slack` (1e-5 of the
 * key's length, against ~64 x 6e-8 for 64-dim keys); when other targets come within it of the best,
 * those few are recomputed in float64 in the plain loop's order, so near-ties go the same way.
 */
function matchByDots(
  { f, units, targets, remaining, others, group, reducer }: Matching,
  k: SimdKernels,
  mem: Float32Array,
  at: { keys: number; units: number; norms: number; sims: number }
): void {
  const { keys, keyDim } = f;
  const { keys: keysAt, units: unitsAt, norms: normsAt, sims: simAt } = at;
  const n = keyDim * 4;
  for (let x = 0; x < others.length; x++) {
    const i = others[x];
    const kk = remaining[i] * keyDim;
    let norm = mem[normsAt + remaining[i]];
    if (norm * 0 !== 0) {
      // Non-finite in float32: a bad key, or one so long its square overflows float32 only.
      norm = 0;
      for (let d = 0; d < keyDim; d++) norm += keys[kk + d] * keys[kk + d];
      if (norm * 0 !== 0) throw keyNonFiniteError(f, remaining[i], reducer);
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
