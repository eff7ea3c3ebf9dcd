// reduce / reduceImage and the text form of reducers, all read from the registry.
import { LeanVisionError } from "./errors.js";
import { reducerDefinition, registeredReducers, specHelp, type ReducerDefinition } from "./registry.js";
import { builtinReducers } from "./reducers/index.js";
import type { ImageFeatures, ReducedImage, ReducedTokens, ReducerSpec, TileShape, TileTokenProvenance, VisionFeatures } from "./types.js";

/** How to write the built-in reducers (specHelp() also lists reducers registered later). */
export const SPEC_HELP = `${specHelp()}; the long forms kind:name=value,... (e.g. visionzip:dominant=54,contextual=10) work too`;
void builtinReducers;

/** Runs the reducer a spec names on one tile. `none` passes every patch through (drops CLS), as LLaVA does. */
export function reduce(f: VisionFeatures, spec: ReducerSpec): ReducedTokens {
  return reducerDefinition(spec).reduce(f, spec);
}

/**
 * Runs the reducer a spec names on every tile of an image. Unless the reducer arranges tiles itself
 * (reduceImage in its definition), the output is each tile's tokens, in tile order.
 */
export function reduceImage(image: ImageFeatures, spec: ReducerSpec): ReducedImage {
  const definition = reducerDefinition(spec);
  checkImage(image);
  if (definition.reduceImage) return definition.reduceImage(image, spec);
  return concatTiles(image.tiles.map((tile) => definition.reduce(tile, spec)));
}

/** Tiles' reductions one after the other, in tile order. */
export function concatTiles(tiles: ReducedTokens[]): ReducedImage {
  const dim = tiles[0].dim;
  const numTokens = tiles.reduce((n, t) => n + t.numTokens, 0);
  const hidden = tiles.length === 1 ? tiles[0].hidden : new Float32Array(numTokens * dim);
  const provenance: TileTokenProvenance[] = [];
  let row = 0;
  tiles.forEach((t, tile) => {
    if (tiles.length > 1) hidden.set(t.hidden, row * dim);
    row += t.numTokens;
    for (const p of t.provenance) provenance.push({ ...p, tile });
  });
  return { hidden, numTokens, dim, provenance, tiles };
}

/** Output tokens of a reducer for tiles of these shapes, or null when it depends on the data (adaptive budgets). */
export function countReduced(tiles: TileShape[], spec: ReducerSpec): number | null {
  const definition = reducerDefinition(spec);
  let total = 0;
  for (const tile of tiles) {
    const n = definition.count(tile, spec);
    if (n === null) return null;
    total += n;
  }
  return total;
}

function checkImage(image: ImageFeatures): void {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_FEATURES", `reduceImage: ${why}`);
  };
  if (!image || !Array.isArray(image.tiles) || image.tiles.length === 0) fail("expected { tiles: VisionFeatures[] } with at least one tile");
  const { rows, cols } = image.tileGrid ?? {};
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) fail("tileGrid must have non-negative integer rows and cols");
  if (image.tiles.length !== 1 + rows * cols) fail(`${image.tiles.length} tiles do not match an overview plus a ${rows}x${cols} tile grid`);
  if (image.tiles.some((t) => t?.dim !== image.tiles[0].dim)) fail("every tile must have the same dim");
}

/** A spec object or its text form, checked: the spec the reducers and adapters work with. */
export function toReducerSpec(spec: ReducerSpec | string): ReducerSpec {
  if (typeof spec === "string") return parseReducerSpec(spec);
  if (spec == null || typeof spec !== "object") {
    throw new LeanVisionError("INVALID_SPEC", `a reducer must be a spec object or a string (got ${String(spec)}); ${specHelp()}`);
  }
  // Round-trip through the text form: validates the kind and its parameters the same way.
  return parseReducerSpec(formatReducerSpec(spec));
}

/**
 * Parses the text form of a reducer: the short forms each reducer defines (`none`,
 * `visionzip:54+10`, `visionzip:auto:0.9+10:16-192`, `pool:2`, `regionpack:2`, ...) or the long
 * form `kind:name=value,...`. Values are checked against the image by the reducer itself.
 */
export function parseReducerSpec(text: string): ReducerSpec {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_SPEC", `reducer "${text}": ${why}; ${specHelp()}`);
  };
  if (typeof text !== "string") fail("expected a string");
  const [head, rest = ""] = text.trim().split(/:(.*)/s);
  const body = rest.trim();
  const definitions = registeredReducers();
  const byKind = definitions.find((d) => d.kind === head);
  if (!byKind && !definitions.some((d) => d.short?.head === head)) fail(`unknown kind "${head}"`);

  if (body === "" || body.includes("=")) {
    if (!byKind) fail(`unknown kind "${head}"`);
    return parseLong(byKind!, body, fail);
  }
  // Short forms: those with a prefix ("auto:") first.
  const shorts = definitions
    .filter((d) => d.short?.head === head)
    .sort((a, b) => (b.short!.prefix?.length ?? 0) - (a.short!.prefix?.length ?? 0));
  const definition = shorts.find((d) => body.toLowerCase().startsWith((d.short!.prefix ?? "").toLowerCase()));
  if (!definition) return fail(`"${head}" takes no short form`);
  const short = definition.short!;
  const spec = short.parse(body.slice(short.prefix?.length ?? 0));
  if (!spec) fail(`expected ${short.syntax} with numbers`);
  return spec!;
}

function parseLong(definition: ReducerDefinition, body: string, fail: (why: string) => never): ReducerSpec {
  const { kind, params } = definition;
  const values: Record<string, number> = {};
  for (const pair of body.split(",").filter((p) => p.trim() !== "")) {
    const [name, value] = pair.split("=").map((s) => s.trim());
    if (!params.includes(name)) fail(`"${kind}" has no parameter "${name}"`);
    if (name in values) fail(`"${name}" is given twice`);
    const number = Number(value);
    if (value === undefined || value === "" || !Number.isFinite(number)) fail(`"${name}" needs a number`);
    values[name] = number;
  }
  const defaults = definition.defaults ?? {};
  const missing = params.filter((n) => !(n in values) && !(n in defaults));
  if (missing.length) fail(`missing ${missing.join(", ")}`);
  return { kind, ...defaults, ...values };
}

/** The short form of a spec, for labels, JSON `reducer` fields and command lines; parseReducerSpec reads it back. */
export function formatReducerSpec(spec: ReducerSpec): string {
  return reducerDefinition(spec).format(spec);
}
