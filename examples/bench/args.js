// Command-line options of `pnpm bench`.
import { parseReducerSpec, formatReducerSpec } from "@leanvision/core";
import { BENCH_REDUCERS } from "@leanvision/core/presets";
import { LLAMA_PROFILES, MODEL_OPTIONS, TRANSFORMERS_PROFILES, parseCli, parseRuntime, parseModelSource, positiveInt, invalid } from "../lib/args.js";

/** None, VisionZip at the paper's 64- and 128-token budgets, 2x2 pooling and 2x region packing. */
export const DEFAULT_REDUCERS = BENCH_REDUCERS.join(",");

export const BENCH_USAGE = `Usage: pnpm bench -- [options]

  --runtime llama|transformers   which runtime runs the model (default llama)
  --profile <name>               synthetic model written by the testkit (default tiny)
                                 llama: ${LLAMA_PROFILES.join(", ")}
                                 transformers: ${TRANSFORMERS_PROFILES.join(", ")}
  --model <gguf> --mmproj <gguf> real llama.cpp files instead of a profile (llama runtime)
  --projector <file>             with --model: a LeanVision projector file (llama: .gguf, TokenPacker or mlp; transformers: TokenPacker .onnx)
  --model <dir>                  a transformers.js model folder (transformers runtime)
  --dtype <dtype>                transformers.js dtype of the ONNX files: fp32 (default), fp16, q8, q4 (transformers runtime)
  --image <file>                 image to encode (default: llama.cpp's tools/mtmd/test-1.jpeg)
  --reducers <list>              comma-separated reducer specs (default ${DEFAULT_REDUCERS})
  --turns <n>                    turns per conversation, the image in turn 1 (default 2)
  --runs <n>                     conversations per reducer; the table shows medians (default 3)
  --max-tokens <n>               tokens generated per turn (default 4)
  --threads <n>                  CPU threads, for LeanVision and the anchor alike (llama; transformers: onnxruntime's
                                 intra-op threads per session; default: all cores but one)
  --json <file>                  where to write the JSON (default bench-results/bench-<runtime>-<profile>.json);
                                 the report is written next to it: <name>.md and <name>.svg
  --no-anchor                    skip stock llama-mtmd-cli (llama runtime only)
  --pipeline                     pipelined prefill (llama): tiles encode while earlier tiles prefill,
                                 the threads split between the two
  --help`;

const OPTIONS = {
  ...MODEL_OPTIONS,
  reducers: { type: "string", default: DEFAULT_REDUCERS },
  turns: { type: "string", default: "2" },
  runs: { type: "string", default: "3" },
  "max-tokens": { type: "string", default: "4" },
  json: { type: "string" },
  dtype: { type: "string" },
  "no-anchor": { type: "boolean", default: false },
  pipeline: { type: "boolean", default: false }
};

/**
 * Splits "none,visionzip:…,pool:…" into specs. A spec may itself hold commas between its
 * parameters ("kind:a=1,b=2"), so a comma starts a new spec only before a kind name.
 */
export function splitReducerList(text) {
  const specs = [];
  for (const part of text.split(",")) {
    if (!part.trim()) continue;
    const startsSpec = /^\s*[a-z][a-z-]*\s*(:|$)/i.test(part);
    if (startsSpec || specs.length === 0) specs.push(part.trim());
    else specs[specs.length - 1] += `,${part.trim()}`;
  }
  return specs;
}

/** Parses argv (without node and script) into bench options; bad input throws LeanVisionError INVALID_INPUT. */
export function parseBenchArgs(argv) {
  const { values } = parseCli(argv, OPTIONS, BENCH_USAGE);
  if (values.help) return { help: true };

  const runtime = parseRuntime(values.runtime);
  const source = parseModelSource(values, runtime, { llama: "tiny", transformers: "tiny" });
  const reducers = splitReducerList(values.reducers).map((s) => parseReducerSpec(s));
  if (reducers.length === 0) invalid("--reducers needs at least one reducer, e.g. --reducers none,visionzip:54+10");
  const names = reducers.map(formatReducerSpec);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) invalid(`--reducers lists ${duplicate} twice; list each reducer once`);
  if (values.dtype !== undefined && runtime !== "transformers") invalid("--dtype is for the transformers runtime (llama.cpp files carry their own types)");
  const dtypeTag = values.dtype ? `-${values.dtype}` : "";

  return {
    help: false,
    runtime,
    ...source,
    image: values.image ?? null,
    reducers,
    turns: positiveInt(values.turns, "--turns"),
    runs: positiveInt(values.runs, "--runs"),
    maxTokens: positiveInt(values["max-tokens"], "--max-tokens"),
    threads: values.threads === undefined ? undefined : positiveInt(values.threads, "--threads"),
    dtype: values.dtype,
    json: values.json ?? `bench-results/bench-${runtime}-${source.profile ?? "custom"}${dtypeTag}${values.pipeline ? "-pipeline" : ""}.json`,
    anchor: runtime === "llama" && !values["no-anchor"],
    pipeline: values.pipeline
  };
}
