// Argument helpers shared by the benchmark, the demo and the web app.
import { parseArgs } from "node:util";
import { LeanVisionError } from "@leanvision/core";

export const LLAMA_PROFILES = ["tiny", "tiny-siglip", "small", "llava-1.5-7b", "nanollava", "tiny-next", "small-next", "llava-1.6-7b", "tiny-tokenpacker", "small-tokenpacker"];
export const TRANSFORMERS_PROFILES = ["tiny", "llava-1.5-7b-shaped", "tiny-onevision", "tiny-nanollava", "onevision-0.5b-shaped", "tiny-tokenpacker", "small-tokenpacker"];

/** Options every example takes: which runtime, which model (synthetic profile or real files), which image. */
export const MODEL_OPTIONS = {
  runtime: { type: "string", default: "llama" },
  profile: { type: "string" },
  model: { type: "string" },
  mmproj: { type: "string" },
  projector: { type: "string" },
  image: { type: "string" },
  threads: { type: "string" },
  help: { type: "boolean", default: false }
};

/** node:util parseArgs, with its errors turned into LeanVisionError and a leading "--" (from `pnpm x -- …`) ignored. */
export function parseCli(argv, options, usage) {
  const args = argv[0] === "--" ? argv.slice(1) : argv;
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (error) {
    invalid(`${error.message}\n\n${usage}`);
  }
}

export function parseRuntime(value) {
  if (value !== "llama" && value !== "transformers") {
    invalid(`--runtime must be "llama" or "transformers", got "${value}"`);
  }
  return value;
}

/**
 * Either a synthetic profile or real files: llama needs --model and --mmproj together,
 * transformers takes a model folder. Returns { profile, modelPath, mmprojPath }.
 * defaults: { llama: profile, transformers: profile } used when neither is given.
 */
export function parseModelSource(values, runtime, defaults) {
  if (values.model || values.mmproj) {
    if (values.profile) invalid("use either --profile or --model/--mmproj, not both");
    if (runtime === "llama" && !(values.model && values.mmproj)) {
      invalid("the llama runtime needs both --model <llm.gguf> and --mmproj <mmproj.gguf>");
    }
    if (runtime === "transformers" && values.mmproj) {
      invalid("--mmproj is for the llama runtime; for transformers pass the model folder with --model <dir> (and a TokenPacker projector with --projector <onnx>)");
    }
    return { profile: null, modelPath: values.model, mmprojPath: values.mmproj ?? null, projectorPath: values.projector ?? null };
  }
  if (values.projector) invalid("--projector goes with --model/--mmproj; the *-tokenpacker profiles bring their own");
  const profiles = runtime === "llama" ? LLAMA_PROFILES : TRANSFORMERS_PROFILES;
  const profile = values.profile ?? defaults[runtime];
  if (!profiles.includes(profile)) {
    invalid(`--profile "${profile}" is not a ${runtime} profile; choose one of ${profiles.join(", ")}`);
  }
  return { profile, modelPath: null, mmprojPath: null, projectorPath: null };
}

export function positiveInt(text, flag) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) invalid(`${flag} must be a positive whole number, got "${text}"`);
  return n;
}

export function invalid(message) {
  throw new LeanVisionError("INVALID_INPUT", message);
}
