import { allFinite, checkFeatures, single, throwNonFiniteOutput } from "./features.js";
import { simd, stage } from "./simd.js";
import type { ReducedTokens, TokenProvenance, VisionFeatures } from "./types.js";

/** Every patch in grid order, CLS dropped (what LLaVA's projector gets). */
export function reduceNone(f: VisionFeatures): ReducedTokens {
  checkFeatures(f, "reduce(none)");
  const { hidden, dim, numTokens, clsIndex } = f;
  const cls = clsIndex ?? numTokens;
  // Everything but the CLS row, in two contiguous copies.
  const out = new Float32Array((numTokens - (clsIndex === null ? 0 : 1)) * dim);
  out.set(hidden.subarray(0, cls * dim), 0);
  if (cls < numTokens) out.set(hidden.subarray((cls + 1) * dim), cls * dim);
  const provenance: TokenProvenance[] = [];
  for (let t = 0; t < numTokens; t++) if (t !== clsIndex) provenance.push({ kind: "patch", sources: single(t) });
  const reduced: ReducedTokens = { hidden: out, numTokens: provenance.length, dim, provenance };
  // The output is the input minus CLS: check it four floats at a time where SIMD runs.
  const k = dim % 4 === 0 ? simd() : null;
  const staged = k && stage(k, out, 0, dim);
  if (k && staged ? k.finite(0, out.length * 4) !== 1 : !allFinite(out, 0, out.length)) throwNonFiniteOutput(f, reduced, "reduce(none)");
  return reduced;
}
