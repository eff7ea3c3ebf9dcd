// Setting up node-llama-cpp's Vulkan prebuilt for the Vulkan test, on machines without a GPU too:
// Mesa's software Vulkan driver (lavapipe, device "llvmpipe") runs the Vulkan backend on the CPU.
//
// - Mesa: installed with apt when it is missing (like the browser test installs chromium).
// - @node-llama-cpp/linux-x64-vulkan (24 MB): fetched with `npm pack` into LeanVision's cache, not
//   into node_modules, so node-llama-cpp's `gpu: "auto"` keeps choosing the CPU binaries in every
//   other test. A module resolve hook makes node-llama-cpp's `import("@node-llama-cpp/linux-x64-vulkan")`
//   find it, in this test process only.
// - The LeanVision addon for those binaries: scripts/build-native.mjs --bins (links the cached objects).
// Every step that cannot be done here returns a reason to skip with, instead of failing.
import { aptInstall } from "@leanvision/testkit";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { register } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { leanvisionCacheDir, requiredNodeLlamaCppVersion } from "../../scripts/llama-source.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const adapterDir = path.resolve(here, "../..");
export const repoRoot = path.resolve(adapterDir, "../..");
const VULKAN_PACKAGE = "@node-llama-cpp/linux-x64-vulkan";
/** Mesa's lavapipe ICD; with it and the loader (libvulkan1), Vulkan has a CPU device. */
const LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

export interface VulkanSetup {
  /** The prebuilt's binaries directory (libllama.vulkan.v0.5.0.so, libggml-vulkan.so, ...). */
  binsDir: string;
  /** The package folder the resolve hook points node-llama-cpp at. */
  packageDir: string;
}

/** Installs what is missing; returns the setup, or a reason to skip. */
export function prepareVulkan(): VulkanSetup | { skip: string } {
  if (process.platform !== "linux" || process.arch !== "x64") return { skip: `node-llama-cpp's Vulkan prebuilt used here is linux-x64 only (this is ${process.platform}-${process.arch})` };
  const mesa = ensureMesaVulkan();
  if (mesa) return { skip: mesa };
  return ensureVulkanPrebuilt();
}

function hasVulkanLoader(): boolean {
  const ldconfig = spawnSync("ldconfig", ["-p"], { encoding: "utf8" });
  return /libvulkan\.so\.1\b/.test(ldconfig.stdout ?? "");
}

/** Mesa's software Vulkan driver and the Vulkan loader; apt-get installs them when missing. */
function ensureMesaVulkan(): string | undefined {
  if (hasVulkanLoader() && existsSync(LAVAPIPE_ICD)) return undefined;
  try {
    aptInstall(["mesa-vulkan-drivers", "libvulkan1"]);
  } catch (error) {
    return `Mesa's Vulkan driver is missing and could not be installed (${(error as Error).message})`;
  }
  if (!hasVulkanLoader() || !existsSync(LAVAPIPE_ICD)) return `apt-get installed mesa-vulkan-drivers and libvulkan1 but ${LAVAPIPE_ICD} or libvulkan.so.1 is missing`;
  return undefined;
}

/** `npm pack`s the Vulkan prebuilt of the pinned node-llama-cpp version into the cache, once. */
function ensureVulkanPrebuilt(): VulkanSetup | { skip: string } {
  const version = requiredNodeLlamaCppVersion();
  const dir = path.join(leanvisionCacheDir(), "node-llama-cpp-prebuilt", `linux-x64-vulkan-${version}`);
  const packageDir = path.join(dir, "package");
  const binsDir = path.join(packageDir, "bins", "linux-x64-vulkan");
  if (!existsSync(path.join(binsDir, "libggml-vulkan.so"))) {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "leanvision-vulkan-prebuilt-"));
    try {
      const packed = spawnSync("npm", ["pack", `${VULKAN_PACKAGE}@${version}`, "--pack-destination", tmp, "--silent"], { encoding: "utf8" });
      if (packed.status !== 0) return { skip: `could not fetch ${VULKAN_PACKAGE}@${version} with npm pack (is the npm registry reachable?): ${(packed.stderr || packed.error?.message || "").trim().split("\n").at(-1)}` };
      const tarball = readdirSync(tmp).find((f) => f.endsWith(".tgz"));
      if (!tarball) return { skip: `npm pack ${VULKAN_PACKAGE}@${version} wrote no tarball` };
      const staging = path.join(tmp, "extract");
      mkdirSync(staging);
      execFileSync("tar", ["xzf", path.join(tmp, tarball), "-C", staging]);
      mkdirSync(path.dirname(dir), { recursive: true });
      rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { binsDir, packageDir };
}

/** Makes node-llama-cpp's `import("@node-llama-cpp/linux-x64-vulkan")` load the cached package, in this process. */
export function registerVulkanPrebuilt(setup: VulkanSetup): void {
  const url = pathToFileURL(path.join(setup.packageDir, JSON.parse(readFileSync(path.join(setup.packageDir, "package.json"), "utf8")).main)).href;
  register(pathToFileURL(path.join(here, "prebuilt-resolve-hook.mjs")).href, { data: { specifier: VULKAN_PACKAGE, url } });
}

const manifestPath = path.join(adapterDir, "build", "native", "manifest.json");

/** Drops the addon built for `binsDir` from the manifest (the NATIVE_BUILD message is checked before building it). */
export function forgetAddon(binsDir: string): void {
  if (!existsSync(manifestPath)) return;
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { addons: Array<{ binsDir: string }> };
  manifest.addons = manifest.addons.filter((a) => a.binsDir !== binsDir);
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
}

/** Links the LeanVision addon for `binsDir` (objects come from the cache; compiles what is missing). */
export function buildAddonFor(binsDir: string): string {
  const res = spawnSync(process.execPath, [path.join(adapterDir, "scripts", "build-native.mjs"), "--bins", binsDir], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`build-native --bins ${binsDir} failed:\n${res.stdout}\n${res.stderr}`);
  return res.stdout;
}
