// node-llama-cpp's binaries flavours, by name: the native build and the run-time lookup recognise the
// CPU, CUDA, Vulkan and Metal libraries and local builds, and the build links an addon for each.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeBinsDir, libllamaIn, libllamaVariant, nodeLlamaCppDir } from "../scripts/llama-source.mjs";
import { adapterDir, forgetAddon } from "./support/vulkan.js";

describe("libllama names", () => {
  it.each([
    ["libllama.v0.5.0.so", "v0.5.0", "CPU"],
    ["libllama.vulkan.v0.5.0.so", "vulkan.v0.5.0", "Vulkan"],
    ["libllama.cuda.v0.5.0.so", "cuda.v0.5.0", "CUDA"],
    ["libllama.metal.v0.5.0.dylib", "metal.v0.5.0", "Metal"],
    ["llama.vulkan.v0.5.0.dll", "vulkan.v0.5.0", "Vulkan"],
    ["libllama.so", "", "CPU"],
    ["libllama.v0.5.0.3f2a9c1b.so", "v0.5.0.3f2a9c1b", "CPU"]
  ])("%s is libllama, variant %j, %s", (name, variant, label) => {
    expect(libllamaVariant(name)).toBe(variant);
    expect(describeBinsDir(`/somewhere/${name}`).label).toBe(label);
  });

  it.each(["libllama-common.so", "llama-addon.node", "libggml.v0.5.0.so", "libggml-vulkan.so", "libllama.so.1"])("%s is not libllama", (name) => {
    expect(libllamaVariant(name)).toBeNull();
  });

  it("a local build is labelled as one", () => {
    expect(describeBinsDir("/x/node-llama-cpp/llama/localBuilds/linux-x64-cuda/Release/libllama.cuda.so").label).toBe("CUDA local build");
  });
});

describe.runIf(process.platform === "linux")("build-native", () => {
  it("links an addon for a CUDA-named binaries folder and records it in the manifest, keeping the others", () => {
    // The CPU prebuilt's libraries under the CUDA prebuilt's file names: linking only needs the names to line up.
    const cpu = path.join(path.dirname(nodeLlamaCppDir()), "@node-llama-cpp", `${process.platform}-${process.arch}`, "bins", `${process.platform}-${process.arch}`);
    const cpuLib = libllamaIn(cpu)!;
    expect(cpuLib).toMatch(/^libllama/);
    const fake = mkdtempSync(path.join(os.tmpdir(), "leanvision-cuda-named-"));
    let addonDir: string | undefined;
    try {
      const variant = libllamaVariant(cpuLib)!;
      copyFileSync(path.join(cpu, cpuLib), path.join(fake, `libllama.cuda.${variant}.so`));
      copyFileSync(path.join(cpu, `libggml.${variant}.so`), path.join(fake, `libggml.cuda.${variant}.so`));
      copyFileSync(path.join(cpu, "libggml-base.so"), path.join(fake, "libggml-base.so"));
      const res = spawnSync(process.execPath, [path.join(adapterDir, "scripts", "build-native.mjs"), "--bins", fake], { encoding: "utf8" });
      expect(res.status, res.stdout + res.stderr).toBe(0);
      const manifestPath = path.join(adapterDir, "build", "native", "manifest.json");
      const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { addons: Array<{ flavour: string; binsDir: string; addon: string }> };
      const entry = manifest.addons.find((a) => a.binsDir === fake);
      expect(entry?.flavour).toBe("CUDA");
      addonDir = path.dirname(path.resolve(path.dirname(manifestPath), entry!.addon));
      expect(existsSync(path.join(addonDir, "leanvision.node"))).toBe(true);
      expect(manifest.addons.some((a) => a.flavour === "CPU")).toBe(true);
    } finally {
      forgetAddon(fake);
      if (addonDir) rmSync(addonDir, { recursive: true, force: true });
      rmSync(fake, { recursive: true, force: true });
    }
  }, 600_000);

  it("--bins on a folder without libllama says so", () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), "leanvision-no-libllama-"));
    try {
      const res = spawnSync(process.execPath, [path.join(adapterDir, "scripts", "build-native.mjs"), "--bins", empty], { encoding: "utf8" });
      expect(res.status).toBe(1);
      expect(res.stderr).toMatch(/no libllama shared library/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
