// Locates the installed node-llama-cpp and checks out the exact llama.cpp source its binaries were
// built from. node-llama-cpp ships that source as a git bundle (llama/gitRelease.bundle), so this
// works offline. Used by the native build (install time), by the testkit (vocab GGUFs) and by the
// benchmarks (sample image, llama-mtmd-cli).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Directory of the node-llama-cpp package the adapter resolves (pinned exactly in package.json). */
export function nodeLlamaCppDir() {
  const entry = createRequire(path.join(adapterDir, "package.json")).resolve("node-llama-cpp");
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

/** Commit of the llama.cpp source bundled with node-llama-cpp. */
export function bundledLlamaCommit() {
  const bundle = bundlePath();
  const heads = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" });
  const commit = heads.split(/\s+/)[0];
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`Unexpected output of git bundle list-heads ${bundle}: ${heads}`);
  return commit;
}

/**
 * Returns a directory holding node-llama-cpp's bundled llama.cpp source, cloning it on first use
 * into `<adapter>/.cache/llama.cpp-<commit>` (or LEANVISION_LLAMA_SOURCE_DIR when set).
 */
export function ensureLlamaSource() {
  if (process.env.LEANVISION_LLAMA_SOURCE_DIR) return process.env.LEANVISION_LLAMA_SOURCE_DIR;
  const commit = bundledLlamaCommit();
  const dir = path.join(adapterDir, ".cache", `llama.cpp-${commit.slice(0, 12)}`);
  if (existsSync(path.join(dir, "tools", "mtmd", "mtmd.h"))) return dir;
  // Clone into a temporary name and rename, so an interrupted clone is never mistaken for a good one.
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  execFileSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundlePath(), tmp], { stdio: "inherit" });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

function bundlePath() {
  const bundle = path.join(nodeLlamaCppDir(), "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) {
    throw new Error(`node-llama-cpp ${nodeLlamaCppVersion()} does not ship llama/gitRelease.bundle; LeanVision needs node-llama-cpp 3.22.1`);
  }
  return bundle;
}

function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureLlamaSource());
}
