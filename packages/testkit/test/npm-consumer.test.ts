// LeanVision as an npm user gets it: the publishable packages packed with `pnpm pack`, installed with
// plain npm into a fresh app outside the repository beside node-llama-cpp and transformers.js from the
// registry (see support/npm-app.ts), and the README's node-llama-cpp snippet run there as written,
// against the synthetic `tiny` model. Skipped, with the reason, when the npm registry is unreachable.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureLlavaGguf, sampleImagePath } from "@leanvision/testkit";
import { cleanEnv, ensureNpmApp, packWorkspace, publishablePackages, registryUnreachable, repoRoot, runNode, tarballFiles } from "./support/npm-app.js";
import type { NpmApp } from "./support/npm-app.js";
import { extractSnippets, prepareSnippet } from "./support/snippets.js";

const SNIPPET_TIMEOUT_MS = 480_000; // seconds-to-a-minute normally; a hang (threads, maxTokens) never ends
let skip: string | undefined;
let app: NpmApp | undefined;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "leanvision-npm-test-"));
  skip = registryUnreachable();
  if (skip) {
    console.warn(`[npm consumer] skipped: ${skip}`);
    return;
  }
  app = await ensureNpmApp();
  console.log(`[npm consumer] ${app.installCommand}\n  in ${app.dir}: ${app.installSeconds.toFixed(0)} s`);
}, 1_800_000);

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("the published tarballs", () => {
  let tarballs: Record<string, string>;

  beforeAll(() => {
    tarballs = app?.tarballs ?? packWorkspace(mkdtempSync(path.join(scratch, "packs-")));
  }, 600_000);

  it("every publishable package declares `files` and ships dist, README.md and LICENSE (MIT), and no tests or dev scripts", () => {
    const packages = publishablePackages();
    expect(packages.map((p) => p.name)).toEqual(expect.arrayContaining(["@leanvision/core", "@leanvision/llama-adapter", "@leanvision/transformers-adapter"]));
    for (const pkg of packages) {
      expect(pkg.manifest.files, `${pkg.name} has no "files"`).toBeInstanceOf(Array);
      expect(pkg.manifest.license).toBe("MIT");
      const files = [...tarballFiles(tarballs[pkg.name]).keys()];
      expect(files, pkg.name).toEqual(expect.arrayContaining(["package.json", "README.md", "LICENSE", "dist/index.js", "dist/index.d.ts"]));
      expect(tarballFiles(tarballs[pkg.name]).get("LICENSE")!.toString()).toMatch(/^MIT License/);
      const unwanted = files.filter((f) => /^(test|tests|bench|fixtures)\//.test(f) || /(^|\/)tsconfig[^/]*\.json$/.test(f) || /\.test\.[cm]?[jt]s$/.test(f) || f === "scripts/measure-vision.mjs");
      expect(unwanted, `${pkg.name} ships workspace-only files`).toEqual([]);
    }
  });

  it("package.json: no workspace: ranges left, @leanvision dependencies are version ranges, every export exists", () => {
    for (const pkg of publishablePackages()) {
      const files = tarballFiles(tarballs[pkg.name]);
      const manifest = JSON.parse(files.get("package.json")!.toString());
      expect(JSON.stringify(manifest), pkg.name).not.toContain("workspace:");
      for (const [dep, range] of Object.entries({ ...manifest.dependencies, ...manifest.peerDependencies } as Record<string, string>)) {
        if (dep.startsWith("@leanvision/")) expect(range, `${pkg.name} -> ${dep}`).toMatch(/^\^?\d+\.\d+\.\d+/);
      }
      const targets: string[] = [];
      const collect = (v: unknown) => (typeof v === "string" ? targets.push(v) : v && typeof v === "object" && Object.values(v).forEach(collect));
      collect(manifest.exports ?? manifest.main);
      expect(targets.length, pkg.name).toBeGreaterThan(0);
      for (const target of targets) expect(files.has(path.posix.normalize(target)), `${pkg.name}: export ${target}`).toBe(true);
    }
    const llama = JSON.parse(tarballFiles(tarballs["@leanvision/llama-adapter"]).get("package.json")!.toString());
    expect(llama.dependencies["@leanvision/core"]).toBeDefined(); // installs without core by hand
    expect(llama.peerDependencies["node-llama-cpp"]).toMatch(/^\d+\.\d+\.\d+$/); // exact: the native build needs it
    const transformers = JSON.parse(tarballFiles(tarballs["@leanvision/transformers-adapter"]).get("package.json")!.toString());
    expect(transformers.peerDependencies["@huggingface/transformers"]).toBe("^4.3.1");
  });

  it("no dangling source maps: every map's sources and every sourceMappingURL are in the tarball", () => {
    for (const pkg of publishablePackages()) {
      const files = tarballFiles(tarballs[pkg.name]);
      for (const [file, data] of files) {
        if (file.endsWith(".js")) {
          const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(data.toString())?.[1];
          if (url && !url.startsWith("data:")) expect(files.has(path.posix.join(path.posix.dirname(file), url)), `${pkg.name}/${file} -> ${url}`).toBe(true);
        }
        if (file.endsWith(".map")) {
          const map = JSON.parse(data.toString()) as { sources: string[]; sourcesContent?: string[]; sourceRoot?: string };
          for (const [i, source] of map.sources.entries()) {
            const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(file), map.sourceRoot ?? "", source));
            expect(files.has(resolved) || map.sourcesContent?.[i] != null, `${pkg.name}/${file}: ${source}`).toBe(true);
          }
        }
      }
    }
  });
});

describe("installed with npm beside node-llama-cpp", () => {
  it("npm install prints one LeanVision line, saying what it builds and how long it took", (ctx) => {
    if (skip || !app) return ctx.skip(skip);
    if (!app.installTty) return ctx.skip("`script` (util-linux) is not installed, so npm ran without a terminal and LeanVision's line had nowhere to go");
    const lines = app.installOutput.split("\n").filter((l) => /\[leanvision/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\[leanvision\] (building|linking) the native addon for node-llama-cpp 3\.22\.1 \(CPU binaries\).* done in \d+ s$/);
  });

  it("the addon is built for node-llama-cpp's CPU binaries in the app, and no build sources stay in node_modules", (ctx) => {
    if (skip || !app) return ctx.skip(skip);
    const adapter = path.join(app.dir, "node_modules", "@leanvision", "llama-adapter");
    expect(realpathSync(adapter).startsWith(realpathSync(app.dir))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(adapter, "build", "native", "manifest.json"), "utf8"));
    expect(manifest.nodeLlamaCpp).toBe("3.22.1");
    expect(manifest.addons.map((a: { flavour: string }) => a.flavour)).toEqual(["CPU"]);
    expect(realpathSync(manifest.addons[0].binsDir).startsWith(realpathSync(path.join(app.dir, "node_modules")))).toBe(true);
    expect(existsSync(path.join(adapter, ".cache"))).toBe(false);
    expect(dirSize(adapter)).toBeLessThan(10 * 1024 * 1024);
    // @leanvision/core came in as the adapter's dependency, from the tarball.
    expect(JSON.parse(readFileSync(path.join(app.dir, "node_modules", "@leanvision", "core", "package.json"), "utf8")).version).toBeDefined();
  });

  it("transformers.js: the adapter's peer range ^4.3.1 takes the newest 4.x without ERESOLVE", (ctx) => {
    if (skip || !app) return ctx.skip(skip);
    const installed = JSON.parse(readFileSync(path.join(app.dir, "node_modules", "@huggingface", "transformers", "package.json"), "utf8")).version as string;
    const view = spawnSync("npm", ["view", "@huggingface/transformers@^4.3.1", "version", "--json"], { encoding: "utf8", env: cleanEnv() });
    const versions = [JSON.parse(view.stdout)].flat() as string[];
    expect(installed).toBe(versions.at(-1));
    expect(compareVersions(installed, "4.3.2")).toBeGreaterThanOrEqual(0);
    expect(app.installOutput).not.toMatch(/ERESOLVE/);
  });

  it("runs the README's node-llama-cpp snippet as written (file names pointed at the synthetic tiny model)", async (ctx) => {
    if (skip || !app) return ctx.skip(skip);
    const snippet = extractSnippets(repoRoot, "README.md").find((s) => /from\s+["']@leanvision\/llama-adapter["']/.test(s.code) && !s.skip);
    expect(snippet, "README.md has no runnable node-llama-cpp snippet").toBeDefined();
    const { modelPath, mmprojPath } = await ensureLlavaGguf("tiny");
    const prepared = prepareSnippet(snippet!.code, { model: modelPath, mmproj: mmprojPath, image: sampleImagePath(), onnxDir: "" });
    expect(prepared.needsGguf).toBe(true);
    mkdirSync(path.join(app.dir, "snippets"), { recursive: true });
    const file = path.join(app.dir, "snippets", "readme-node-llama-cpp.mjs");
    writeFileSync(file, prepared.code);
    const run = await runNode(app.dir, file, SNIPPET_TIMEOUT_MS);
    expect(run.timedOut, `README.md:${snippet!.line} did not finish in ${SNIPPET_TIMEOUT_MS / 1000} s (threads? maxTokens?):\n${run.output.slice(-3000)}`).toBe(false);
    expect(run.status, `README.md:${snippet!.line} failed:\n${run.output.slice(-3000)}`).toBe(0);
    console.log(`[npm consumer] README.md:${snippet!.line} ran in ${run.seconds.toFixed(1)} s`);
  }, SNIPPET_TIMEOUT_MS + 120_000);
});

describe("what the native build says when something is missing", () => {
  const buildScript = path.join(repoRoot, "packages", "llama-adapter", "scripts", "build-native.mjs");
  const runBuild = (script: string, env: Record<string, string>, args: string[] = []) =>
    spawnSync(process.execPath, [script, ...args], { encoding: "utf8", env: { ...cleanEnv(), ...env } });
  /** A PATH holding only the named tools (node always). */
  const pathWith = (tools: string[]) => {
    const bin = mkdtempSync(path.join(scratch, "bin-"));
    for (const tool of ["node", ...tools]) {
      const real = tool === "node" ? process.execPath : execFileSync("which", [tool], { encoding: "utf8" }).trim();
      symlinkSync(real, path.join(bin, tool));
    }
    return bin;
  };

  it("no C++ compiler: names the package to install", () => {
    const res = runBuild(buildScript, { PATH: pathWith([]), CXX: "" });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/a C\+\+17 compiler is needed.*apt-get install g\+\+/);
  });

  it("no git: names the package to install", () => {
    const res = runBuild(buildScript, { PATH: pathWith(["c++"]), CXX: "" });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/git is needed.*apt-get install git/);
    // As the install script, it warns and lets the install finish.
    expect(runBuild(buildScript, { PATH: pathWith(["c++"]), CXX: "" }, ["--install"]).status).toBe(0);
  });

  it("another node-llama-cpp version, or none: says which exact version to install", () => {
    const fake = mkdtempSync(path.join(scratch, "app-"));
    const adapter = path.join(fake, "node_modules", "@leanvision", "llama-adapter");
    mkdirSync(path.join(adapter, "scripts"), { recursive: true });
    cpSync(path.join(repoRoot, "packages", "llama-adapter", "package.json"), path.join(adapter, "package.json"));
    for (const f of ["build-native.mjs", "llama-source.mjs"]) cpSync(path.join(repoRoot, "packages", "llama-adapter", "scripts", f), path.join(adapter, "scripts", f));
    const script = path.join(adapter, "scripts", "build-native.mjs");

    let res = runBuild(script, {});
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/node-llama-cpp is not installed.*npm install node-llama-cpp@3\.22\.1/);

    const nlc = path.join(fake, "node_modules", "node-llama-cpp");
    mkdirSync(nlc, { recursive: true });
    writeFileSync(path.join(nlc, "package.json"), JSON.stringify({ name: "node-llama-cpp", version: "3.21.0", type: "module", main: "index.js" }));
    writeFileSync(path.join(nlc, "index.js"), "export {};\n");
    res = runBuild(script, {});
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/needs node-llama-cpp exactly 3\.22\.1.*but 3\.21\.0 is installed.*npm install node-llama-cpp@3\.22\.1/);
  });
});

function dirSize(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? dirSize(p) : st.size;
  }
  return total;
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}
