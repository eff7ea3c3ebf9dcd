// The reducer registry: one definition per reducer (reducers/*.ts). `reduce`, the text form of a
// reducer and both adapters' capture decisions read it, so adding a reducer is one file plus one
// registerReducer call.
import { LeanVisionError } from "./errors.js";
import type { ImageFeatures, ReducedImage, ReducedTokens, ReducerSpec, TileShape, VisionFeatures } from "./types.js";

/** What a reducer needs from the vision encoder beyond the feature layer's hidden states. */
export interface EncoderNeeds {
  /** The feature layer's attention (CLS row with CLS, per-patch received attention without). */
  attention: boolean;
  /** The feature layer's keys, averaged over heads. */
  keys: boolean;
  /**
   * The runtime's own projector input, unreduced: the adapter feeds exactly what its runtime's own
   * graph would (so `none` reproduces the runtime's embeddings, quirks included).
   */
  stock?: boolean;
  /** Hidden states of several encoder layers (VisionFeatures.multiLevel); the projector in use names the layers. */
  multiLevel?: boolean;
}

/** A reducer: its spec's text form, what it needs from the encoder, and how it runs. */
export interface ReducerDefinition<Spec extends ReducerSpec = ReducerSpec> {
  /** `spec.kind`, and the name of its long text form `kind:name=value,...`. */
  readonly kind: Spec["kind"];
  /** Parameter names of the long form, in order. */
  readonly params: readonly string[];
  /** Values of parameters the long form may leave out (so `kind` alone is a spec when every parameter has one). */
  readonly defaults?: Readonly<Record<string, number>>;
  /**
   * Short text forms: `prefix` is what follows `kind:`-less head (e.g. "visionzip" + "auto:"),
   * `syntax` is shown in errors; `parse` returns undefined when the body does not match.
   */
  readonly short?: { head: string; prefix?: string; syntax: string; parse(body: string): Spec | undefined };
  /** One line for SPEC_HELP. */
  readonly help: string;
  /** The short form of a spec (parseReducerSpec reads it back). */
  format(spec: Spec): string;
  needs(spec: Spec): EncoderNeeds;
  /** Reduces one tile. */
  reduce(tile: VisionFeatures, spec: Spec): ReducedTokens;
  /** Output tokens for a tile of this shape, when that does not depend on the tile's data (else null). */
  count(tile: TileShape, spec: Spec): number | null;
  /** Reduces a whole image when tiles depend on each other (order, budget); default: each tile on its own, in tile order. */
  reduceImage?(image: ImageFeatures, spec: Spec): ReducedImage;
  /**
   * reduceImage's output starts with tile 0's own `reduce` output, unchanged (VisionZip's NeXT order):
   * a runtime may then feed the overview's rows before the other tiles are encoded.
   */
  readonly leadsWithTile0?: boolean;
}

const registry = new Map<string, ReducerDefinition>();

/** Adds a reducer; its kind must be new. Returns the definition. */
export function registerReducer<Spec extends ReducerSpec>(definition: ReducerDefinition<Spec>): ReducerDefinition<Spec> {
  const kind = definition?.kind;
  if (typeof kind !== "string" || !/^[a-z][a-z0-9-]*$/.test(kind)) {
    throw new LeanVisionError("INVALID_SPEC", `registerReducer: kind must be lower-case letters, digits and dashes (got ${JSON.stringify(kind)})`);
  }
  if (registry.has(kind)) throw new LeanVisionError("INVALID_SPEC", `registerReducer: a reducer "${kind}" is already registered`);
  for (const method of ["format", "needs", "reduce", "count"] as const) {
    if (typeof definition[method] !== "function") throw new LeanVisionError("INVALID_SPEC", `registerReducer("${kind}"): ${method} must be a function`);
  }
  registry.set(kind, definition as unknown as ReducerDefinition);
  return definition;
}

/** Removes a reducer added by registerReducer (tests, plugins that unload). */
export function unregisterReducer(kind: string): boolean {
  return registry.delete(kind);
}

/** The definition of a spec's kind; INVALID_SPEC for an unknown one. */
export function reducerDefinition(spec: ReducerSpec | { kind?: unknown } | null | undefined): ReducerDefinition {
  const kind = spec?.kind;
  const definition = typeof kind === "string" ? registry.get(kind) : undefined;
  if (!definition) throw new LeanVisionError("INVALID_SPEC", `unknown reducer ${JSON.stringify(spec)}; ${specHelp()}`);
  return definition;
}

/** Every registered reducer, in registration order. */
export function registeredReducers(): ReducerDefinition[] {
  return [...registry.values()];
}

/** What the encoder must capture for a spec. */
export function reducerNeeds(spec: ReducerSpec): EncoderNeeds {
  return reducerDefinition(spec).needs(spec);
}

/** How to write a reducer, from the registered definitions. */
export function specHelp(): string {
  return `write a reducer as ${registeredReducers().map((d) => d.help).join("; ")}`;
}
