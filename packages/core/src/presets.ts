// The reducer presets: the one list the demo, the chat web app, the benchmarks and the scripts
// offer, in the text form parseReducerSpec reads and formatReducerSpec writes (so they stay valid
// whatever shape the spec objects take). REDUCER_PRESETS' counts are for LLaVA-1.5's 576 patches;
// presetsFor(tile) adapts the list to another encoder's tile (SigLIP's 27x27 patches, ...).
import { countReduced, parseReducerSpec } from "./reduce.js";
import type { TileShape } from "./types.js";

export interface ReducerPreset {
  /** The reducer in its canonical text form (formatReducerSpec(parseReducerSpec(spec)) === spec). */
  readonly spec: string;
  /** What a person picks it by, with the tokens a tile keeps when that does not depend on the image. */
  readonly label: string;
}

/** What each preset is called, without its token count; `S` is a grid reducer's scale. */
const NAMES: ReadonlyArray<{ spec: string; name: (s: number) => string }> = [
  { spec: "none", name: () => "no reduction" },
  { spec: "visionzip:54+10", name: () => "VisionZip 54+10" },
  { spec: "visionzip:108+20", name: () => "VisionZip 108+20" },
  { spec: "visionzip:162+30", name: () => "VisionZip 162+30" },
  { spec: "visionzip:auto:0.9+10:32-160", name: () => "VisionZip adaptive (90% of attention)" },
  { spec: "pool:2", name: (s) => `${s}×${s} pooling` },
  { spec: "regionpack:2", name: (s) => `region packing ${s}×` }
];

/** LLaVA-1.5's tile: CLIP ViT-L/14-336, 24x24 patches and CLS. */
const LLAVA_15_TILE: TileShape = { numTokens: 577, grid: { rows: 24, cols: 24 }, clsIndex: 0 };

/**
 * The presets for one encoder tile: labels carry that tile's token counts, and a grid reducer whose
 * scale does not fit the grid (region packing 2x on SigLIP's 27x27) becomes the next scale that does
 * (regionpack:3, 81 tokens), or is left out when none up to half the grid's side does, so every
 * preset runs on the model it is offered for.
 */
export function presetsFor(tile: TileShape): ReducerPreset[] {
  const out: ReducerPreset[] = [];
  for (const { spec, name } of NAMES) {
    const [kind, param] = spec.split(":");
    const grid = kind === "pool" || kind === "regionpack";
    let scale = grid ? Number(param) : 0;
    let chosen = spec;
    // Scales up to half the grid's side: beyond that a "reduction" is a handful of tokens.
    while (grid && countReduced([tile], parseReducerSpec(chosen)) === null && scale < Math.min(tile.grid.rows, tile.grid.cols) / 2) {
      chosen = `${kind}:${++scale}`;
    }
    const count = countReduced([tile], parseReducerSpec(chosen));
    if (grid && count === null) continue; // no scale fits this grid: not offered
    if (out.some((p) => p.spec === chosen)) continue;
    out.push({ spec: chosen, label: count === null ? name(scale) : `${name(scale)} (${count})` });
  }
  return out;
}

/** Every preset for LLaVA-1.5, no reduction first: VisionZip at the paper's three budgets and adaptive, then the baselines. */
export const REDUCER_PRESETS: readonly ReducerPreset[] = presetsFor(LLAVA_15_TILE);

/** The reducer LeanVision uses when none is chosen (the paper's 64-token setting). */
export const DEFAULT_REDUCER = "visionzip:54+10";

/** The set the benchmarks compare: no reduction, VisionZip at 64 and 128 tokens, pooling and region packing at 144. */
export const BENCH_REDUCERS: readonly string[] = ["none", "visionzip:54+10", "visionzip:108+20", "pool:2", "regionpack:2"];
