// Locating the native addon: it must be loaded after node-llama-cpp's getLlama(), and it must share
// the llama/ggml libraries node-llama-cpp loaded instead of bringing its own copies.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { getLlama } from "node-llama-cpp";
import { LeanVisionError } from "@leanvision/core";
import { loadNativeBinding } from "../src/native-binding.js";

function mappedLibraries(pattern: RegExp): string[] {
  const files = readFileSync("/proc/self/maps", "utf8").split("\n").map((l) => l.slice(l.indexOf("/")));
  return [...new Set(files.filter((f) => pattern.test(path.basename(f))))];
}

describe.runIf(process.platform === "linux")("native binding", () => {
  it("before getLlama() it says to call getLlama() first", () => {
    expect(mappedLibraries(/^libllama/)).toEqual([]);
    let error: unknown;
    try {
      loadNativeBinding();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(LeanVisionError);
    expect((error as LeanVisionError).code).toBe("NATIVE_BUILD");
    expect((error as LeanVisionError).message).toMatch(/getLlama\(\)/);
  });

  it("after getLlama() it loads the addon linked to the same libllama/libggml instances", async () => {
    await getLlama({ gpu: false });
    const before = { llama: mappedLibraries(/^libllama(\.v[\d.]+)?\.so$/), ggml: mappedLibraries(/^libggml(-base|\.v[\d.]+)?\.so$/) };
    expect(before.llama).toHaveLength(1);
    const binding = loadNativeBinding();
    expect(typeof binding.createVisionContext).toBe("function");
    expect(typeof binding.project).toBe("function");
    expect(typeof binding.decodeEmbeddings).toBe("function");
    expect(mappedLibraries(/leanvision\.node$/)).toHaveLength(1);
    // No second copy of llama.cpp or ggml came in with the addon.
    expect(mappedLibraries(/^libllama(\.v[\d.]+)?\.so$/)).toEqual(before.llama);
    expect(mappedLibraries(/^libggml(-base|\.v[\d.]+)?\.so$/)).toEqual(before.ggml);
    expect(loadNativeBinding()).toBe(binding);
  });
});
