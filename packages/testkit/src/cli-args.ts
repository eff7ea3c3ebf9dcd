// The command line of `pnpm --filter @leanvision/testkit make` (src/cli.ts), apart so tests can read it.
import path from "node:path";
import { parseArgs } from "node:util";
import { LeanVisionError } from "@leanvision/core";
import { GGUF_PROFILES } from "./gguf/profiles.js";

/** ONNX profiles whose names no GGUF profile shares, so they need no --onnx. */
export const ONNX_ONLY = ["llava-1.5-7b-shaped", "tiny-onevision", "tiny-nanollava", "onevision-0.5b-shaped"];

const DTYPES = ["fp32", "fp16", "q4", "q8"];

export const USAGE = `Usage: pnpm --filter @leanvision/testkit make <profile...> [--out dir] [--onnx] [--dtypes list] [--check] [--bench] [--threads n]

  GGUF profiles (llama.cpp / node-llama-cpp): ${Object.keys(GGUF_PROFILES).join(", ")}
                  tiny-tokenpacker, small-tokenpacker (the pair plus a TokenPacker projector file; needs Python 3 with torch and numpy)
  ONNX profiles (transformers.js): tiny, tiny-tokenpacker, small-tokenpacker (with --onnx; the *-tokenpacker
                  folders come with their TokenPacker projector as ONNX), ${ONNX_ONLY.join(", ")}
  mtmd-cli        build stock llama.cpp's llama-mtmd-cli from node-llama-cpp's bundled source

  --out dir       cache directory (default $LEANVISION_CACHE_DIR or ~/.cache/leanvision)
  --onnx          write the transformers.js ONNX layout instead of GGUF
  --dtypes list   SigLIP ONNX profiles: dtypes to write, e.g. fp32,fp16,q4,q8 (default: the profile's)
  --check         run llama-mtmd-cli on each GGUF pair with the sample image and print the token count
  --bench         measure the language model's prompt evaluation in node-llama-cpp: a LLaVA prompt
                  with all image tokens + 40 text tokens, and one with 64 image tokens + 40
  --threads n     threads for --check and --bench (default: llama.cpp's / node-llama-cpp's own)
  --runs n        timed runs per prompt length for --bench (default 3; the median is printed)
`;

export interface Args { profiles: string[]; out?: string; onnx: boolean; check: boolean; bench: boolean; threads?: number; runs?: number; dtypes?: string[] }

/** The command line, read with node:util's parseArgs; bad input throws LeanVisionError INVALID_INPUT. */
export function parseMakeArgs(argv: string[]): Args {
  const invalid = (message: string): never => {
    throw new LeanVisionError("INVALID_INPUT", `${message}\n\n${USAGE}`);
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv[0] === "--" ? argv.slice(1) : argv,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        onnx: { type: "boolean", default: false },
        check: { type: "boolean", default: false },
        bench: { type: "boolean", default: false },
        threads: { type: "string" },
        runs: { type: "string" },
        dtypes: { type: "string" },
        help: { type: "boolean", short: "h", default: false }
      }
    });
  } catch (error) {
    return invalid((error as Error).message);
  }
  const { values, positionals } = parsed;
  const count = (flag: "threads" | "runs") => {
    const text = values[flag];
    if (text === undefined) return undefined;
    const n = Number(text);
    return Number.isInteger(n) && n >= 1 ? n : invalid(`--${flag} needs a positive integer (got "${text}")`);
  };
  return {
    profiles: values.help ? [] : positionals,
    // pnpm runs the script in the package folder; resolve relative paths against where it was called.
    out: values.out === undefined ? undefined : path.resolve(process.env.INIT_CWD ?? process.cwd(), values.out),
    onnx: values.onnx,
    check: values.check,
    bench: values.bench,
    threads: count("threads"),
    runs: count("runs"),
    dtypes: dtypesOf(values.dtypes, invalid)
  };
}


function dtypesOf(text: string | undefined, invalid: (message: string) => never): string[] | undefined {
  if (text === undefined) return undefined;
  const dtypes = text.split(",").filter(Boolean);
  if (!dtypes.length || dtypes.some((d) => !DTYPES.includes(d))) invalid(`--dtypes needs a comma-separated list of ${DTYPES.join(", ")} (got "${text}")`);
  return dtypes;
}
