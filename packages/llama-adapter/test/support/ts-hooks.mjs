// Module hooks for ts-loader.mjs.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const root = new URL("../../../../", import.meta.url);
const aliases = {
  "@leanvision/core": "packages/core/src/index.ts",
  "@leanvision/testkit": "packages/testkit/src/index.ts",
  "@leanvision/llama-adapter": "packages/llama-adapter/src/index.ts",
  "@leanvision/llama-adapter/gguf": "packages/llama-adapter/src/gguf.ts",
};
// Imported on the first .ts file only: node-llama-cpp's binary self-test forks this process with the
// same --import, and that fork loads no TypeScript.
let typescript;

export async function resolve(specifier, context, next) {
  if (Object.hasOwn(aliases, specifier)) return { url: new URL(aliases[specifier], root).href, shortCircuit: true };
  if (context.parentURL?.endsWith(".ts") && /^\.{1,2}\/.*\.js$/.test(specifier)) {
    const source = new URL(specifier.replace(/\.js$/, ".ts"), context.parentURL);
    if (existsSync(fileURLToPath(source))) return { url: source.href, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return next(url, context);
  const file = fileURLToPath(url);
  typescript ??= (await import("typescript")).default;
  const compilerOptions = { module: typescript.ModuleKind.ESNext, target: typescript.ScriptTarget.ES2022, verbatimModuleSyntax: true };
  const { outputText } = typescript.transpileModule(await readFile(file, "utf8"), { compilerOptions, fileName: file });
  return { format: "module", source: outputText, shortCircuit: true };
}
