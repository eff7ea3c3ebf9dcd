// VisionZip, the reference version: the spec below (DESIGN.md "Reducer specs") as plain code, one
// step after the other, in float64, with no fast path and no input checks. It is not on the
// reducers' path: visionzip.ts (with kernels/visionzip.ts) is what runs, and the tests hold it to
// this version, token for token and within float32 rounding value for value.
//
// 1. Dominant. With a CLS token: score each patch by the CLS row of the attention, summed over
//    heads; keep CLS plus the top `dominant - 1` patches (so `dominant` counts CLS). Without CLS
//    (SigLIP): score = mean attention a patch receives, over all heads and all query tokens; keep
//    the top `dominant` patches. (Equal scores: the lower token index first.)
// 2. Output order: CLS first, then the kept patches in ascending token order (not score order).
// 3. Contextual. The remaining tokens, in ascending order, are R. Normalise their keys to unit
//    length. `step = max(1, floor(R / contextual))`; targets are R's positions 0, step, 2*step, …,
//    at most `contextual` of them. Every other remaining token is assigned to the target whose
//    normalised key has the largest dot product with its own (first one on ties). Each contextual
//    token = the target's hidden state plus the mean hidden state of the tokens assigned to it
//    (the target itself is not in that mean; a target with none adds zero). Contextual tokens
//    follow the dominant ones, in target order. `contextual = 0` means none.
// 4. Adaptive budget: the dominant count is the smallest k whose patches' score mass reaches a
//    coverage fraction of the total (plus CLS), within [min, max].
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "../types.js";

type Full = VisionFeatures & { attention: Float32Array; heads: number; keys?: Float32Array; keyDim?: number };

/** Step 1's score of every patch, with the patches (token indices, ascending). */
export function patchScores(f: Full): { patches: number[]; scores: number[] } {
  const { numTokens: n, clsIndex: cls, attention, heads } = f;
  const patches = [...Array(n).keys()].filter((t) => t !== cls);
  const scores = patches.map((t) => {
    let s = 0;
    for (let h = 0; h < heads; h++) {
      if (cls !== null) s += attention[(h * n + cls) * n + t];
      else for (let q = 0; q < n; q++) s += attention[(h * n + q) * n + t];
    }
    return cls !== null ? s : s / (heads * n);
  });
  return { patches, scores };
}

export function visionZipReference(f: Full, options: { dominant: number; contextual: number }): ReducedTokens {
  const { hidden, dim, clsIndex: cls } = f;
  const row = (t: number) => Array.from(hidden.subarray(t * dim, (t + 1) * dim));

  // 1. Dominant: the top patches by score, the lower index first among equal scores.
  const { patches, scores } = patchScores(f);
  const byScore = patches.map((t, p) => ({ t, s: scores[p] })).sort((a, b) => b.s - a.s || a.t - b.t);
  const kept = new Set(byScore.slice(0, options.dominant - (cls !== null ? 1 : 0)).map((x) => x.t));

  // 2. Output order.
  const tokens: { kind: TokenProvenance["kind"]; sources: number[]; value: number[] }[] = [];
  if (cls !== null) tokens.push({ kind: "cls", sources: [cls], value: row(cls) });
  for (const t of patches) if (kept.has(t)) tokens.push({ kind: "dominant", sources: [t], value: row(t) });

  // 3. Contextual.
  const R = patches.filter((t) => !kept.has(t));
  if (options.contextual > 0 && R.length > 0) {
    const keyDim = f.keyDim!;
    const unit = (t: number) => {
      const key = Array.from(f.keys!.subarray(t * keyDim, (t + 1) * keyDim));
      const length = Math.sqrt(key.reduce((s, x) => s + x * x, 0));
      return key.map((x) => (length > 0 ? x / length : 0));
    };
    const dot = (a: number[], b: number[]) => a.reduce((s, x, d) => s + x * b[d], 0);
    const step = Math.max(1, Math.floor(R.length / options.contextual));
    const targets: number[] = [];
    for (let i = 0; i < R.length && targets.length < options.contextual; i += step) targets.push(R[i]);
    const targetKeys = targets.map(unit);
    const members = targets.map((t) => [t]);
    for (const t of R) {
      if (targets.includes(t)) continue;
      const key = unit(t);
      let best = 0;
      for (let j = 1; j < targets.length; j++) if (dot(key, targetKeys[j]) > dot(key, targetKeys[best])) best = j;
      members[best].push(t);
    }
    targets.forEach((target, j) => {
      const assigned = members[j].slice(1);
      const value = row(target).map((x, d) => x + (assigned.length ? assigned.reduce((s, t) => s + hidden[t * dim + d], 0) / assigned.length : 0));
      tokens.push({ kind: "contextual", sources: members[j].sort((a, b) => a - b), value });
    });
  }
  return {
    hidden: Float32Array.from(tokens.flatMap((t) => t.value)),
    numTokens: tokens.length,
    dim,
    provenance: tokens.map(({ kind, sources }) => ({ kind, sources: Int32Array.from(sources) }))
  };
}

/** Step 4: the dominant count for a coverage fraction, then VisionZip with it. */
export function visionZipAdaptiveReference(
  f: Full,
  options: { coverage: number; min: number; max: number; contextual: number }
): ReducedTokens & { chosenDominant: number } {
  const ranked = patchScores(f).scores.sort((a, b) => b - a);
  const total = ranked.reduce((s, x) => s + x, 0);
  let k = 0;
  for (let mass = 0; k < ranked.length && mass < options.coverage * total; k++) mass += ranked[k];
  const chosenDominant = Math.min(options.max, Math.max(options.min, k + (f.clsIndex !== null ? 1 : 0)));
  return { ...visionZipReference(f, { dominant: chosenDominant, contextual: options.contextual }), chosenDominant };
}
