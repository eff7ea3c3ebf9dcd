// The reducer presets: the one list the demo, the chat web app, the benchmarks and the scripts
// offer, in the text form parseReducerSpec reads and formatReducerSpec writes (so they stay valid
// whatever shape the spec objects take). Token counts are for LLaVA-1.5's 576 patches.

export interface ReducerPreset {
  /** The reducer in its canonical text form (formatReducerSpec(parseReducerSpec(spec)) === spec). */
  readonly spec: string;
  /** What a person picks it by. */
  readonly label: string;
}

/** Every preset, no reduction first: VisionZip at the paper's three budgets and adaptive, then the baselines. */
export const REDUCER_PRESETS: readonly ReducerPreset[] = [
  { spec: "none", label: "no reduction (576)" },
  { spec: "visionzip:54+10", label: "VisionZip 64 (54+10)" },
  { spec: "visionzip:108+20", label: "VisionZip 128 (108+20)" },
  { spec: "visionzip:162+30", label: "VisionZip 192 (162+30)" },
  { spec: "visionzip:auto:0.9+10:32-160", label: "VisionZip adaptive (90% of attention)" },
  { spec: "pool:2", label: "2×2 pooling (144)" },
  { spec: "regionpack:2", label: "region packing 2× (144)" }
];

/** The reducer LeanVision uses when none is chosen (the paper's 64-token setting). */
export const DEFAULT_REDUCER = "visionzip:54+10";

/** The set the benchmarks compare: no reduction, VisionZip at 64 and 128 tokens, pooling and region packing at 144. */
export const BENCH_REDUCERS: readonly string[] = ["none", "visionzip:54+10", "visionzip:108+20", "pool:2", "regionpack:2"];
