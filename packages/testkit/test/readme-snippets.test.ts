// Every JavaScript code block of README.md and the published packages' READMEs runs as written, in
// an app where LeanVision is installed from its tarballs with npm (support/npm-app.ts), against the
// synthetic `tiny` models: only model and image file names are substituted (the rules are in
// support/snippets.ts). The blocks are read from the READMEs when the test runs, so whatever they say
// is what runs. Skipped, with the reason, when the npm registry is unreachable.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureLlavaGguf, ensureLlavaOnnx, sampleImagePath } from "@leanvision/testkit";
import { ensureNpmApp, publishablePackages, registryUnreachable, repoRoot, runNode } from "./support/npm-app.js";
import type { NpmApp } from "./support/npm-app.js";
import { extractSnippets, prepareSnippet } from "./support/snippets.js";

const TIMEOUT_MS = 480_000; // seconds-to-a-minute normally; a hang (threads, maxTokens) never ends
const readmes = ["README.md", ...publishablePackages().map((p) => path.relative(repoRoot, path.join(p.dir, "README.md")))];
const snippets = readmes.flatMap((readme) => extractSnippets(repoRoot, readme));

describe("README snippets run as written", () => {
  let skip: string | undefined;
  let app: NpmApp;

  beforeAll(async () => {
    skip = registryUnreachable();
    if (skip) {
      console.warn(`[readme snippets] skipped: ${skip}`);
      return;
    }
    app = await ensureNpmApp();
  }, 1_800_000);

  it("the READMEs have code to run: the repository's and every published package's", () => {
    for (const pkg of publishablePackages()) {
      expect(snippets.some((s) => s.readme === path.relative(repoRoot, path.join(pkg.dir, "README.md"))), `${pkg.name}'s README has no js block`).toBe(true);
    }
    expect(snippets.filter((s) => s.readme === "README.md").length).toBeGreaterThanOrEqual(2);
  });

  for (const snippet of snippets) {
    it(`${snippet.readme}:${snippet.line}`, async (ctx) => {
      if (snippet.skip) return ctx.skip(snippet.skip);
      if (skip) return ctx.skip(skip);
      const gguf = await ensureLlavaGguf("tiny");
      const prepared = prepareSnippet(snippet.code, { model: gguf.modelPath, mmproj: gguf.mmprojPath, image: sampleImagePath(), onnxDir: "" });
      const code = prepared.needsOnnx
        ? prepareSnippet(snippet.code, { model: gguf.modelPath, mmproj: gguf.mmprojPath, image: sampleImagePath(), onnxDir: (await ensureLlavaOnnx(onnxProfileFor(prepared.substitutions))).dir }).code
        : prepared.code;
      const dir = path.join(app.dir, "snippets");
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `${snippet.readme.replace(/[^\w]+/g, "-")}-${snippet.line}.mjs`);
      writeFileSync(file, code);
      const run = await runNode(app.dir, file, TIMEOUT_MS);
      const where = `${snippet.readme}:${snippet.line} (run as ${file}; substituted ${prepared.substitutions.map(([a]) => JSON.stringify(a)).join(", ") || "nothing"})`;
      expect(
        run.timedOut,
        `${where} did not finish in ${TIMEOUT_MS / 1000} s. A synthetic model never stops without maxTokens, and node-llama-cpp's default of at least 4 threads crawls on 2 cores.\n${run.output.slice(-3000)}`
      ).toBe(false);
      expect(run.status, `${where} failed:\n${run.output.slice(-3000)}`).toBe(0);
      console.log(`[readme snippets] ${snippet.readme}:${snippet.line} ran in ${run.seconds.toFixed(1)} s`);
    }, TIMEOUT_MS + 120_000);
  }
});

/** The synthetic ONNX model with the layout (and dtype files) of the repo a snippet names: OneVision and nanoLLaVA are SigLIP + Qwen2. */
function onnxProfileFor(substitutions: Array<[string, string]>): string {
  const names = substitutions.map(([value]) => value).join(" ");
  if (/nanollava/i.test(names)) return "tiny-nanollava";
  if (/onevision/i.test(names)) return "tiny-onevision";
  return "tiny";
}
