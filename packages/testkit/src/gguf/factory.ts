// ensureLlavaGguf: writes a profile's GGUF pair once into the cache and reuses it afterwards.
// The directory name carries a content hash of (writer version, profile shapes, seed, tokenizer
// file), and the pair is written under a temporary name and renamed, so an interrupted write never
// looks complete.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { LeanVisionError } from "@leanvision/core";
import { ensureLlamaSource } from "./llama-source.js";
import { fileSha256, languageModelFile, mmprojFile, readTokenizerMetadata, vocabPath } from "./llava.js";
import { GGUF_PROFILES, type GgufProfile, type GgufProfileName, imageTokenGrid } from "./profiles.js";
import { formatBytes, progressBar, type ProgressCallback } from "./progress.js";
import { ensureTokenPackerProjector, TOKENPACKER_PROFILES, type TokenPackerProfileName } from "./tokenpacker.js";
import { tensorDataBytes, writeGguf } from "./writer.js";

/** Bumped whenever the bytes written for a profile change, so old cache entries are not reused. */
export const GGUF_WRITER_VERSION = 1;

export interface EnsureOptions {
  /** Defaults to $LEANVISION_CACHE_DIR or ~/.cache/leanvision. */
  cacheDir?: string;
  /** Bytes of tensor data written so far / in all. Without it, large profiles draw a bar on stderr. */
  onProgress?: (done: number, total: number) => void;
}

export interface LlavaGgufPair {
  profile: string;
  modelPath: string;
  mmprojPath: string;
  /** The projector file of a *-tokenpacker profile (loadVisionModel's projectorPath). */
  projectorPath?: string;
}

/** What the cache directory's manifest.json records about a written pair. */
export interface GgufManifest {
  profile: GgufProfileName;
  writerVersion: number;
  hash: string;
  shapes: GgufProfile;
  imageTokens: number;
  hasCls: boolean;
  files: { model: { name: string; bytes: number }; mmproj: { name: string; bytes: number } };
  writeMs: number;
  createdAt: string;
}

const LARGE_PROFILE_BYTES = 256 * 1024 * 1024;
const inFlight = new Map<string, Promise<LlavaGgufPair>>();

export function defaultCacheDir(): string {
  return process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
}

/** The sample image shipped with llama.cpp's mtmd tool (tools/mtmd/test-1.jpeg of the bundled source). */
export function sampleImagePath(): string {
  return path.join(ensureLlamaSource(), "tools", "mtmd", "test-1.jpeg");
}

/**
 * Returns the profile's language model and mmproj, writing them first if the cache lacks them.
 * Deterministic: the same profile and writer version always give the same bytes.
 */
export function ensureLlavaGguf(profile: GgufProfileName | TokenPackerProfileName, opts: EnsureOptions = {}): Promise<LlavaGgufPair> {
  if (Object.hasOwn(TOKENPACKER_PROFILES, profile)) {
    // A GGUF pair plus a TokenPacker projector file made through the converter.
    const tp = TOKENPACKER_PROFILES[profile as TokenPackerProfileName];
    return ensureLlavaGguf(tp.base, opts).then((pair) => ({
      ...pair,
      profile,
      projectorPath: ensureTokenPackerProjector(tp.name, { cacheDir: opts.cacheDir ?? defaultCacheDir() })
    }));
  }
  const shapes = GGUF_PROFILES[profile as GgufProfileName];
  if (!Object.hasOwn(GGUF_PROFILES, profile) || !shapes) {
    return Promise.reject(new LeanVisionError("INVALID_INPUT",
      `Unknown GGUF profile "${String(profile)}"; use one of: ${[...Object.keys(GGUF_PROFILES), ...Object.keys(TOKENPACKER_PROFILES)].join(", ")}`));
  }
  const cacheDir = path.resolve(opts.cacheDir ?? defaultCacheDir());
  const key = `${cacheDir}\0${profile}`;
  let pending = inFlight.get(key);
  if (!pending) {
    pending = writePairIfMissing(shapes, cacheDir, opts.onProgress).finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

/** Cache directory a profile's pair lives in (whether or not it has been written yet). */
export function ggufPairDir(profile: GgufProfileName, cacheDir = defaultCacheDir()): string {
  const shapes = GGUF_PROFILES[profile];
  return path.join(path.resolve(cacheDir), "gguf", `${profile}-${contentHash(shapes).slice(0, 16)}`);
}

function contentHash(shapes: GgufProfile): string {
  const vocabHash = fileSha256(vocabPath(shapes.lm.vocab));
  return createHash("sha256").update(JSON.stringify({ writer: GGUF_WRITER_VERSION, shapes, vocabHash })).digest("hex");
}

async function writePairIfMissing(shapes: GgufProfile, cacheDir: string, onProgress?: ProgressCallback): Promise<LlavaGgufPair> {
  const hash = contentHash(shapes);
  const dir = path.join(cacheDir, "gguf", `${shapes.name}-${hash.slice(0, 16)}`);
  const pair = { profile: shapes.name, modelPath: path.join(dir, "model.gguf"), mmprojPath: path.join(dir, "mmproj.gguf") };
  if (existsSync(path.join(dir, "manifest.json"))) return pair;

  const tokenizer = await readTokenizerMetadata(vocabPath(shapes.lm.vocab));
  const lm = languageModelFile(shapes, tokenizer);
  const mmproj = mmprojFile(shapes);
  const lmBytes = tensorDataBytes(lm.tensors);
  const total = lmBytes + tensorDataBytes(mmproj.tensors);

  mkdirSync(path.dirname(dir), { recursive: true });
  const free = freeBytes(path.dirname(dir));
  if (free !== null && free < total * 1.05) {
    throw new LeanVisionError("NO_SPACE",
      `Writing the "${shapes.name}" profile needs ${formatBytes(total)} but ${path.dirname(dir)} has ${formatBytes(free)} free; free some space or set LEANVISION_CACHE_DIR to a larger disk`);
  }
  const report = onProgress ?? (total >= LARGE_PROFILE_BYTES ? progressBar(`writing ${shapes.name}`) : undefined);

  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const started = performance.now();
    const modelBytes = await writeGguf(path.join(tmp, "model.gguf"), lm, report && ((done) => report(done, total)));
    const mmprojBytes = await writeGguf(path.join(tmp, "mmproj.gguf"), mmproj, report && ((done) => report(lmBytes + done, total)));
    const grid = imageTokenGrid(shapes.vision);
    const manifest: GgufManifest = {
      profile: shapes.name,
      writerVersion: GGUF_WRITER_VERSION,
      hash,
      shapes,
      imageTokens: grid.tokens,
      hasCls: grid.hasCls,
      files: { model: { name: "model.gguf", bytes: modelBytes }, mmproj: { name: "mmproj.gguf", bytes: mmprojBytes } },
      writeMs: Math.round(performance.now() - started),
      createdAt: new Date().toISOString(),
    };
    writeFileSync(path.join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    // A directory without a manifest is not a finished pair (for example, files copied by hand): replace it.
    if (existsSync(dir) && !existsSync(path.join(dir, "manifest.json"))) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (err) {
      // Another process finished the same pair first; its files are identical, keep them.
      if (!existsSync(path.join(dir, "manifest.json"))) throw err;
    }
    return pair;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Reads a written pair's manifest (write time, sizes, shapes). */
export function readGgufManifest(pair: LlavaGgufPair): GgufManifest {
  return JSON.parse(readFileSync(path.join(path.dirname(pair.modelPath), "manifest.json"), "utf8")) as GgufManifest;
}

function freeBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}
