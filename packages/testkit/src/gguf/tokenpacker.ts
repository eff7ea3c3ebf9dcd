// Synthetic TokenPacker projector files, made the way a user makes one from a real checkpoint: a
// checkpoint in the official release format (python/make_tokenpacker_checkpoint.py: config.json,
// fp16 shards pytorch_model-0000N-of-00002.bin and their index, the projector under
// model.mm_projector.*) converted by the llama adapter's scripts/convert-tokenpacker.py.
//
// The profiles `tiny-tokenpacker` and `small-tokenpacker` are the `tiny` / `small` GGUF pairs plus
// such a projector file, sized for their CLIP tower and language model.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LeanVisionError, type TokenPackerWeights } from "@leanvision/core";
import { readGgufHeader } from "@leanvision/llama-adapter/gguf";
import { decodeValues, GgmlType } from "./numeric.js";
import type { GgufProfileName } from "./profiles.js";

export type TokenPackerProfileName = "tiny-tokenpacker" | "small-tokenpacker";

/** A synthetic TokenPacker projector for one GGUF profile (the shapes follow the official module, scaled down). */
export interface TokenPackerProfile {
  name: TokenPackerProfileName;
  /** The GGUF pair it goes with. */
  base: GgufProfileName;
  description: string;
  /** CLIP width c: q_proj_1's input, the attention width, the kv projections' width (official: all 1024). */
  width: number;
  heads: number;
  /** mlp.0's output (official: the language model's width). */
  mlpHidden: number;
  lmWidth: number;
  /** Hugging Face hidden_states of the tower concatenated into the multi-level features (official 12, 16, 22, 23 of 24 layers). */
  levels: number[];
  /** hidden_states index of the patch features: the last layer the base mmproj runs. */
  featureLayer: number;
  seed: number;
}

export const TOKENPACKER_PROFILES: Readonly<Record<TokenPackerProfileName, TokenPackerProfile>> = {
  "tiny-tokenpacker": {
    name: "tiny-tokenpacker",
    base: "tiny",
    description: "The tiny pair plus a TokenPacker projector (width 128, 2 heads, multi-level hidden states 1, 2, 2, 3 of the 3 run, -> 256).",
    width: 128, heads: 2, mlpHidden: 256, lmWidth: 256, levels: [1, 2, 2, 3], featureLayer: 3, seed: 11,
  },
  "small-tokenpacker": {
    name: "small-tokenpacker",
    base: "small",
    description: "The small pair plus a TokenPacker projector (width 384, 3 heads, multi-level hidden states 3, 4, 5, 6 of the 6 run, -> 1280).",
    width: 384, heads: 3, mlpHidden: 1280, lmWidth: 1280, levels: [3, 4, 5, 6], featureLayer: 6, seed: 13,
  },
};

export interface TokenPackerProjectorOptions {
  /** Region side the projector packs (2, 3, 4: 144, 64, 36 tokens at 24x24); default 2. */
  scale?: number;
  /** Type of the projector file's matrices: f16 as the checkpoint (default), or f32 (the ONNX file is float32 either way). */
  outtype?: "auto" | "f32";
  /** Which of the two files the conversion writes to return: GGUF (llama adapter, default) or ONNX (transformers adapter). */
  format?: "gguf" | "onnx";
  cacheDir: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const testkitDir = path.resolve(here, "..", "..");
/** The synthetic checkpoint writer (needs torch). */
export const CHECKPOINT_SCRIPT = path.join(testkitDir, "python", "make_tokenpacker_checkpoint.py");
/** The llama adapter's converter (needs numpy). */
export const CONVERTER_SCRIPT = path.resolve(testkitDir, "..", "llama-adapter", "scripts", "convert-tokenpacker.py");

/**
 * A Python 3 that can import `modules`: $LEANVISION_PYTHON, python3, or Debian's /usr/bin/python3
 * (where `apt-get install python3-torch python3-numpy` puts them).
 */
const pythons = new Map<string, string>();

export function findPython(modules: string[]): string {
  const key = modules.join(",");
  const known = pythons.get(key);
  if (known) return known;
  const candidates = [process.env.LEANVISION_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c);
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", modules.map((m) => `import ${m}`).join("; ")], { encoding: "utf8" });
    if (r.status === 0) {
      pythons.set(key, python);
      return python;
    }
  }
  throw new LeanVisionError(
    "CONVERTER_FAILED",
    `no Python 3 with ${modules.join(" and ")} found (tried ${candidates.join(", ")}); ` +
      `install them (Debian: apt-get install ${modules.map((m) => `python3-${m}`).join(" ")}) or set LEANVISION_PYTHON`
  );
}

function run(python: string, args: string[], what: string): string {
  const r = spawnSync(python, args, { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    throw new LeanVisionError("CONVERTER_FAILED", `${what} failed (${python} ${args.join(" ")}): ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  }
  return r.stdout;
}

/** Writes a synthetic official-format checkpoint of `profile` into `dir` (torch). */
export function writeTokenPackerCheckpoint(profile: TokenPackerProfile, dir: string, scale: number, extra: string[] = []): void {
  const python = findPython(["torch"]);
  run(python, [
    CHECKPOINT_SCRIPT, dir, "--width", String(profile.width), "--levels", String(profile.levels.length),
    "--hidden", String(profile.mlpHidden), "--lm-width", String(profile.lmWidth), "--heads", String(profile.heads),
    "--scale", String(scale), "--seed", String(profile.seed + scale), ...extra,
  ], "writing the synthetic TokenPacker checkpoint");
}

/** Runs scripts/convert-tokenpacker.py on `checkpoint` with the profile's layer choices; returns its report line. */
export function convertTokenPacker(profile: TokenPackerProfile, checkpoint: string, output: string, extra: string[] = []): string {
  const python = findPython(["numpy"]);
  return run(python, [
    CONVERTER_SCRIPT, checkpoint, "-o", output, "--heads", String(profile.heads),
    "--levels", profile.levels.join(","), "--feature-layer", String(profile.featureLayer), ...extra,
  ], "convert-tokenpacker.py");
}

/**
 * The profile's projector file at `scale`, written once into the cache (checkpoint + conversion) and
 * reused afterwards; the directory name hashes the profile, the options and both scripts. One
 * conversion writes both projector.gguf and projector.onnx from the same checkpoint; `format` picks.
 */
export function ensureTokenPackerProjector(name: TokenPackerProfileName, opts: TokenPackerProjectorOptions): string {
  const profile = TOKENPACKER_PROFILES[name];
  if (!profile) throw new LeanVisionError("INVALID_INPUT", `Unknown TokenPacker profile "${name}"; use one of: ${Object.keys(TOKENPACKER_PROFILES).join(", ")}`);
  const scale = opts.scale ?? 2;
  const outtype = opts.outtype ?? "auto";
  const hash = createHash("sha256")
    .update(JSON.stringify({ profile, scale, outtype }))
    .update(readFileSync(CHECKPOINT_SCRIPT))
    .update(readFileSync(CONVERTER_SCRIPT))
    .digest("hex")
    .slice(0, 16);
  const dir = path.join(path.resolve(opts.cacheDir), "tokenpacker", `${name}-s${scale}-${outtype}-${hash}`);
  const file = path.join(dir, opts.format === "onnx" ? "projector.onnx" : "projector.gguf");
  if (existsSync(file)) return file;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    // Named like the official uploads ("...-144token"), though config.json's scale_factor decides.
    const checkpoint = path.join(tmp, `TokenPacker-${profile.base}-${(24 / scale) ** 2}token`);
    writeTokenPackerCheckpoint(profile, checkpoint, scale);
    convertTokenPacker(profile, checkpoint, path.join(tmp, "projector.gguf"), ["--outtype", outtype, "--onnx", path.join(tmp, "projector.onnx")]);
    rmSync(checkpoint, { recursive: true, force: true });
    mkdirSync(path.dirname(dir), { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch (err) {
      if (!existsSync(file)) throw err; // another process finished the same file first
    }
    return file;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const BF16 = 30;

/** PyTorch's shape of a ggml one (reversed, trailing 1s of ggml dropped). */
function shapeOf(ggmlShape: number[]): number[] {
  const shape = [...ggmlShape].reverse();
  while (shape.length > 1 && shape[0] === 1) shape.shift();
  return shape;
}

/**
 * A projector file's tensors as core's tokenPacker() takes them: the official state-dict names,
 * PyTorch shapes ([out, in] for Linear), float32 values (f16 decoded exactly).
 */
export function readProjectorStateDict(file: string): TokenPackerWeights {
  const header = readGgufHeader(file);
  const fd = openSync(file, "r");
  try {
    const out: Record<string, { data: Float32Array; shape: number[] }> = {};
    for (const t of header.tensors.values()) {
      if (t.type !== GgmlType.F32 && t.type !== GgmlType.F16 && t.type !== BF16) throw new Error(`${file}: ${t.name} is not f32, f16 or bf16`);
      const bytes = new Uint8Array(t.byteSize);
      readSync(fd, bytes, 0, t.byteSize, t.fileOffset);
      const count = t.shape.reduce((a, b) => a * b, 1);
      if (t.type === BF16) {
        // bf16 is the top half of a float32.
        const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
        out[t.name] = { data: new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer), shape: shapeOf(t.shape) };
        continue;
      }
      out[t.name] = { data: decodeValues(t.type as GgmlType, bytes, count), shape: shapeOf(t.shape) };
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
