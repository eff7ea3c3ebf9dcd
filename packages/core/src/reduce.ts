import { LeanVisionError } from "./errors.js";
import { allFinite, checkFeatures, single, throwNonFiniteOutput } from "./features.js";
import { simd, stage } from "./simd.js";
import { poolTokens } from "./pool.js";
import { regionPack } from "./regionpack.js";
import type { ReducedTokens, ReducerSpec, TokenProvenance, VisionFeatures } from "./types.js";
import { visionZip, visionZipAdaptive } from "./visionzip.js";

/** Runs the reducer a spec names. `none` passes every patch through (drops CLS), as LLaVA does. */
export function reduce(f: VisionFeatures, spec: ReducerSpec): ReducedTokens {
  switch (spec?.kind) {
    case "none":
      return allPatches(f);
    case "visionzip":
      return visionZip(f, spec);
    case "visionzip-adaptive":
      return visionZipAdaptive(f, spec);
    case "pool":
      return poolTokens(f, spec);
    case "regionpack":
      return regionPack(f, spec);
    default:
      throw new LeanVisionError("INVALID_SPEC", `unknown reducer ${JSON.stringify(spec)}; ${SPEC_HELP}`);
  }
}

function allPatches(f: VisionFeatures): ReducedTokens {
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

/** Default bounds of the adaptive budget in the short spec form `visionzip:auto:COVERAGE+C`. */
export const ADAPTIVE_DEFAULT_MIN = 16;
export const ADAPTIVE_DEFAULT_MAX = 192;

/** Parameter names of each spec kind in the long form `kind:name=value,...`. */
const PARAMS = {
  none: [],
  visionzip: ["dominant", "contextual"],
  "visionzip-adaptive": ["coverage", "min", "max", "contextual"],
  pool: ["stride"],
  regionpack: ["scale"]
} as const satisfies Record<ReducerSpec["kind"], readonly string[]>;

export const SPEC_HELP =
  "write a reducer as none, visionzip:D+C (D dominant tokens counting CLS, C contextual, e.g. visionzip:54+10), " +
  `visionzip:auto:COVERAGE+C[:MIN-MAX] (adaptive dominant count, e.g. visionzip:auto:0.9+10, MIN-MAX defaults to ` +
  `${ADAPTIVE_DEFAULT_MIN}-${ADAPTIVE_DEFAULT_MAX}), pool:S (S x S windows, e.g. pool:2) or regionpack:S (e.g. regionpack:2); ` +
  "the long forms visionzip:dominant=54,contextual=10, visionzip-adaptive:coverage=0.9,min=32,max=160,contextual=10, " +
  "pool:stride=2 and regionpack:scale=2 work too";

/** A number in a short spec: decimal, optional sign, fraction and exponent (what String(number) writes). */
const NUM = String.raw`[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?`;
const SHORT: Record<string, [RegExp, (m: string[]) => ReducerSpec]> = {
  visionzip: [
    new RegExp(`^(${NUM})\\+(${NUM})$`, "i"),
    ([, dominant, contextual]) => ({ kind: "visionzip", dominant: +dominant, contextual: +contextual })
  ],
  "visionzip:auto": [
    new RegExp(`^(${NUM})\\+(${NUM})(?::(${NUM})-(${NUM}))?$`, "i"),
    ([, coverage, contextual, min, max]) => ({
      kind: "visionzip-adaptive",
      coverage: +coverage,
      min: min === undefined ? ADAPTIVE_DEFAULT_MIN : +min,
      max: max === undefined ? ADAPTIVE_DEFAULT_MAX : +max,
      contextual: +contextual
    })
  ],
  pool: [new RegExp(`^(${NUM})$`, "i"), ([, stride]) => ({ kind: "pool", stride: +stride })],
  regionpack: [new RegExp(`^(${NUM})$`, "i"), ([, scale]) => ({ kind: "regionpack", scale: +scale })]
};

/**
 * Parses the command-line form of a reducer. Short forms: `none`, `visionzip:54+10` (dominant +
 * contextual), `visionzip:auto:0.9+10` or `visionzip:auto:0.9+10:16-192` (adaptive: coverage +
 * contextual, dominant count within MIN-MAX, default 16-192), `pool:2`, `regionpack:2`. The long
 * form `kind:name=value,...` (e.g. `visionzip:dominant=54,contextual=10`) works too. Values are
 * checked against the image by the reducer itself.
 */
export function parseReducerSpec(text: string): ReducerSpec {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_SPEC", `reducer "${text}": ${why}; ${SPEC_HELP}`);
  };
  if (typeof text !== "string") fail("expected a string");
  const [kind, rest = ""] = text.trim().split(/:(.*)/s);
  if (!Object.hasOwn(PARAMS, kind)) fail(`unknown kind "${kind}"`);
  const body = rest.trim();
  if (body !== "" && !body.includes("=")) {
    const auto = kind === "visionzip" && /^auto:/i.test(body);
    const short = SHORT[auto ? "visionzip:auto" : kind];
    if (!short) fail(`"${kind}" takes no short form`);
    const match = short[0].exec((auto ? body.slice(5) : body).replace(/\s+/g, ""));
    if (!match) {
      const form = { visionzip: auto ? "visionzip:auto:COVERAGE+C[:MIN-MAX]" : "visionzip:D+C", pool: "pool:S", regionpack: "regionpack:S" };
      fail(`expected ${form[kind as keyof typeof form]} with numbers`);
    }
    return short[1](match as string[]);
  }
  const names: readonly string[] = PARAMS[kind as ReducerSpec["kind"]];
  const values: Record<string, number> = {};
  for (const pair of body.split(",").filter((p) => p.trim() !== "")) {
    const [name, value] = pair.split("=").map((s) => s.trim());
    if (!names.includes(name)) fail(`"${kind}" has no parameter "${name}"`);
    if (name in values) fail(`"${name}" is given twice`);
    const number = Number(value);
    if (value === undefined || value === "" || !Number.isFinite(number)) fail(`"${name}" needs a number`);
    values[name] = number;
  }
  const missing = names.filter((n) => !(n in values));
  if (missing.length) fail(`missing ${missing.join(", ")}`);
  return { kind, ...values } as ReducerSpec;
}

/**
 * The short form of a spec, for labels, JSON `reducer` fields and command lines; parseReducerSpec
 * reads it back: `none`, `visionzip:54+10`, `visionzip:auto:0.9+10:16-192`, `pool:2`, `regionpack:2`.
 */
export function formatReducerSpec(spec: ReducerSpec): string {
  switch (spec.kind) {
    case "none":
      return "none";
    case "visionzip":
      return `visionzip:${spec.dominant}+${spec.contextual}`;
    case "visionzip-adaptive":
      return `visionzip:auto:${spec.coverage}+${spec.contextual}:${spec.min}-${spec.max}`;
    case "pool":
      return `pool:${spec.stride}`;
    case "regionpack":
      return `regionpack:${spec.scale}`;
    default:
      throw new LeanVisionError("INVALID_SPEC", `unknown reducer ${JSON.stringify(spec)}; ${SPEC_HELP}`);
  }
}
