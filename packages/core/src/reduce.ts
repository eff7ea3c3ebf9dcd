import { LeanVisionError } from "./errors.js";
import { checkFeatures, patchTokenIndices, TokenWriter } from "./features.js";
import { poolTokens } from "./pool.js";
import { regionPack } from "./regionpack.js";
import type { ReducedTokens, ReducerSpec, VisionFeatures } from "./types.js";
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
  const patchTokens = patchTokenIndices(f);
  const out = new TokenWriter(patchTokens.length, f.dim);
  for (const t of patchTokens) out.copy("patch", f, t);
  return out.finish();
}

/** Parameter names of each spec kind, in the order formatReducerSpec writes them. */
const PARAMS = {
  none: [],
  visionzip: ["dominant", "contextual"],
  "visionzip-adaptive": ["coverage", "min", "max", "contextual"],
  pool: ["stride"],
  regionpack: ["scale"]
} as const satisfies Record<ReducerSpec["kind"], readonly string[]>;

const SPEC_HELP =
  "write a reducer as none, visionzip:dominant=54,contextual=10, " +
  "visionzip-adaptive:coverage=0.9,min=32,max=160,contextual=10, pool:stride=2 or regionpack:scale=2";

/**
 * Parses the command-line form of a reducer, `kind[:name=value,...]`, e.g.
 * `visionzip:dominant=54,contextual=10`. Values are checked against the image by the reducer itself.
 */
export function parseReducerSpec(text: string): ReducerSpec {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_SPEC", `reducer "${text}": ${why}; ${SPEC_HELP}`);
  };
  if (typeof text !== "string") fail("expected a string");
  const [kind, body = ""] = text.trim().split(/:(.*)/s);
  if (!Object.hasOwn(PARAMS, kind)) fail(`unknown kind "${kind}"`);
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

/** The inverse of parseReducerSpec, for labels and command lines. */
export function formatReducerSpec(spec: ReducerSpec): string {
  const names: readonly string[] = PARAMS[spec.kind];
  const values = spec as unknown as Record<string, number>;
  return names.length ? `${spec.kind}:${names.map((n) => `${n}=${values[n]}`).join(",")}` : spec.kind;
}
