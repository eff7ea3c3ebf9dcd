// Locates the installed node-llama-cpp and checks out the exact llama.cpp source its binaries were
// built from. node-llama-cpp ships that source as a git bundle (llama/gitRelease.bundle), so this
// works offline. Used by the native build (install time), by the testkit (vocab GGUFs) and by the
// benchmarks (sample image, llama-mtmd-cli).
//
// The checkout (about 200 MB) lives in LeanVision's cache, outside node_modules:
// $LEANVISION_CACHE_DIR, else ~/.cache/leanvision (see leanvisionCacheDir()).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The node-llama-cpp version LeanVision compiles against and reaches into (the peer dependency, exact). */
export function requiredNodeLlamaCppVersion() {
  return readJson(path.join(adapterDir, "package.json")).peerDependencies["node-llama-cpp"];
}

/** LeanVision's cache: $LEANVISION_CACHE_DIR, else ~/.cache/leanvision. Never inside node_modules. */
export function leanvisionCacheDir() {
  return path.resolve(process.env.LEANVISION_CACHE_DIR || path.join(os.homedir(), ".cache", "leanvision"));
}

/** Directory of the node-llama-cpp package the adapter resolves (a peer dependency, pinned exactly). */
export function nodeLlamaCppDir() {
  let entry;
  try {
    entry = createRequire(path.join(adapterDir, "package.json")).resolve("node-llama-cpp");
  } catch {
    throw new Error(
      `node-llama-cpp is not installed next to @leanvision/llama-adapter; install the exact version it is built for: ` +
        `npm install node-llama-cpp@${requiredNodeLlamaCppVersion()}`
    );
  }
  let dir = path.dirname(entry);
  while (!existsSync(path.join(dir, "package.json")) || readJson(path.join(dir, "package.json")).name !== "node-llama-cpp") {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`Cannot locate node-llama-cpp's package.json above ${entry}`);
    dir = parent;
  }
  return dir;
}

export function nodeLlamaCppVersion() {
  return readJson(path.join(nodeLlamaCppDir(), "package.json")).version;
}

/**
 * Throws, saying what to install, unless the installed node-llama-cpp is exactly the version the
 * adapter is built for (the addon compiles against its bundled llama.cpp and reads its private fields).
 */
export function checkNodeLlamaCppVersion() {
  const required = requiredNodeLlamaCppVersion();
  const installed = nodeLlamaCppVersion();
  if (installed !== required) {
    throw new Error(
      `@leanvision/llama-adapter needs node-llama-cpp exactly ${required} (its native addon is compiled against the ` +
        `llama.cpp source that version bundles), but ${installed} is installed at ${nodeLlamaCppDir()}; ` +
        `install it with: npm install node-llama-cpp@${required}`
    );
  }
  return installed;
}

/** Throws with what to install when `git` is not on PATH. */
export function checkGit() {
  const res = spawnSync("git", ["--version"], { encoding: "utf8" });
  if (res.error || res.status !== 0) {
    throw new Error(
      "git is needed to unpack the llama.cpp source node-llama-cpp ships (llama/gitRelease.bundle, offline) but it is not on PATH; " +
        "install it (Debian/Ubuntu: apt-get install git; Fedora: dnf install git; Alpine: apk add git; macOS: xcode-select --install)"
    );
  }
}

// node-llama-cpp's binaries: lib{llama,ggml}[.<variant>].{so,dylib} ({llama,ggml}[.<variant>].dll on
// Windows), where the variant is [<gpu>.][<llama.cpp release>][.<cmake options hash>]: "v0.5.0" for the
// CPU prebuilt, "vulkan.v0.5.0", "cuda.v0.5.0", "metal.v0.5.0"; none for a plain CMake build.
// (libllama-common.so, llama-addon.node and libggml-<backend>.so are other files.)
const LIBLLAMA = /^(?:lib)?llama(?:\.([A-Za-z0-9_+.-]+?))?\.(?:so|dylib|dll)$/;
const GPU_LABELS = { vulkan: "Vulkan", cuda: "CUDA", metal: "Metal" };

/** The variant of a libllama file name ("" for a plain libllama.so), or null when it is not libllama. */
export function libllamaVariant(fileName) {
  const m = LIBLLAMA.exec(path.basename(fileName));
  return m ? (m[1] ?? "") : null;
}

/** The libllama shared library in a binaries directory, or null. */
export function libllamaIn(dir) {
  if (!existsSync(dir)) return null;
  return readdirSync(dir).find((f) => libllamaVariant(f) !== null) ?? null;
}

/**
 * Which node-llama-cpp binaries flavour a libllama file (or a directory holding one) is:
 * `gpu` is "cpu", "vulkan", "cuda", "metal" (or another GPU name node-llama-cpp builds for);
 * `label` says it in words, e.g. "Vulkan", "CPU", "CUDA local build".
 */
export function describeBinsDir(fileOrDir) {
  const isDir = existsSync(fileOrDir) && statSync(fileOrDir).isDirectory();
  const libllama = isDir ? libllamaIn(fileOrDir) : path.basename(fileOrDir);
  const variant = libllama ? libllamaVariant(libllama) : null;
  if (variant === null) throw new Error(`no libllama shared library in ${fileOrDir}`);
  const first = variant.split(".")[0];
  const gpu = first === "" || /^v\d/.test(first) || /^[0-9a-f]{8}$/.test(first) ? "cpu" : first.toLowerCase();
  const local = /[\\/]localBuilds[\\/]/.test(isDir ? fileOrDir : path.dirname(fileOrDir));
  const label = `${gpu === "cpu" ? "CPU" : (GPU_LABELS[gpu] ?? gpu)}${local ? " local build" : ""}`;
  return { libllama, variant, gpu, local, label };
}

/** Commit of the llama.cpp source bundled with node-llama-cpp. */
export function bundledLlamaCommit() {
  checkGit();
  const bundle = bundlePath();
  const heads = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" });
  const commit = heads.split(/\s+/)[0];
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`Unexpected output of git bundle list-heads ${bundle}: ${heads}`);
  return commit;
}

/** Where the checkout of `commit` lives in the cache. */
export function llamaSourceDir(commit = bundledLlamaCommit(), cacheDir = leanvisionCacheDir()) {
  return path.join(cacheDir, `llama.cpp-${commit.slice(0, 12)}`);
}

/**
 * Returns a directory holding node-llama-cpp's bundled llama.cpp source, cloning it on first use into
 * `<cache>/llama.cpp-<commit>` (`opts.cacheDir`, else $LEANVISION_CACHE_DIR or ~/.cache/leanvision), or
 * LEANVISION_LLAMA_SOURCE_DIR when set.
 */
export function ensureLlamaSource(opts = {}) {
  if (process.env.LEANVISION_LLAMA_SOURCE_DIR) return process.env.LEANVISION_LLAMA_SOURCE_DIR;
  const dir = llamaSourceDir(bundledLlamaCommit(), opts.cacheDir ?? leanvisionCacheDir());
  if (isCheckout(dir)) return dir;
  // Clone into a temporary name and rename, so an interrupted clone is never mistaken for a good one,
  // and two installs running at once do not step on each other.
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(path.dirname(dir), { recursive: true });
  } catch (err) {
    throw new Error(`cannot create the cache directory ${path.dirname(dir)} (${err.message}); set LEANVISION_CACHE_DIR to a writable directory`);
  }
  execFileSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundlePath(), tmp], { stdio: ["ignore", "ignore", "inherit"] });
  if (isCheckout(dir)) {
    rmSync(tmp, { recursive: true, force: true }); // another process finished first
    return dir;
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

function isCheckout(dir) {
  return existsSync(path.join(dir, "tools", "mtmd", "mtmd.h"));
}

function bundlePath() {
  const bundle = path.join(nodeLlamaCppDir(), "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) {
    throw new Error(
      `node-llama-cpp ${nodeLlamaCppVersion()} does not ship llama/gitRelease.bundle; ` +
        `LeanVision needs node-llama-cpp ${requiredNodeLlamaCppVersion()} (npm install node-llama-cpp@${requiredNodeLlamaCppVersion()})`
    );
  }
  return bundle;
}

function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureLlamaSource());
}
