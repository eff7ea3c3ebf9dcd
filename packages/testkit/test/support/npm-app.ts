// A fresh npm app with LeanVision installed the way a user installs it: the publishable workspace
// packages packed with `pnpm pack` (workspace: ranges rewritten, prepack builds dist), installed with
// plain npm beside node-llama-cpp and transformers.js from the npm registry. The app lives outside the
// repository (in LeanVision's cache, keyed by the tarballs' content), so nothing in it can resolve
// anything from the workspace; the test files that use it share one install per content.
//
// The install omits optional dependencies, which skips node-llama-cpp's CUDA and Vulkan binaries
// (about 600 MB) but also its CPU binaries and sharp's, which are optional dependencies too; those are
// named explicitly instead (what packages/llama-adapter/README.md tells CPU-only users to do).
// onnxruntime-node's install script downloads CUDA files; ONNXRUNTIME_NODE_INSTALL=skip keeps its
// bundled CPU binary.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../../..");

export interface WorkspacePackage {
  name: string;
  dir: string;
  manifest: Record<string, any>;
}

export interface NpmApp {
  dir: string;
  /** package name -> tarball path (inside the app folder). */
  tarballs: Record<string, string>;
  /** What `npm install` printed (through a pseudo-terminal when `script` is there, as a user sees it). */
  installOutput: string;
  /** Whether the install ran with a terminal (so LeanVision's install line could reach it). */
  installTty: boolean;
  installSeconds: number;
  /** The npm command line that installed the app. */
  installCommand: string;
}

/** The non-private packages under packages/, dependencies first. */
export function publishablePackages(): WorkspacePackage[] {
  const all = readdirSync(path.join(repoRoot, "packages"))
    .map((name) => path.join(repoRoot, "packages", name))
    .filter((dir) => existsSync(path.join(dir, "package.json")))
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) }))
    .filter((p) => p.manifest.private !== true)
    .map((p) => ({ name: p.manifest.name as string, ...p }));
  const names = new Set(all.map((p) => p.name));
  const ordered: WorkspacePackage[] = [];
  const visit = (p: WorkspacePackage, seen: Set<string>) => {
    if (ordered.includes(p) || seen.has(p.name)) return;
    seen.add(p.name);
    for (const dep of Object.keys({ ...p.manifest.dependencies, ...p.manifest.peerDependencies })) {
      const target = all.find((q) => q.name === dep);
      if (target && names.has(dep)) visit(target, seen);
    }
    ordered.push(p);
  };
  for (const p of all) visit(p, new Set());
  return ordered;
}

/** Environment for npm and the app's processes: none of pnpm's npm_* settings leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // NODE_PATH (pnpm and vitest point it into the workspace's node_modules) would let the app resolve
    // packages from the workspace; npm_* are pnpm's settings for its own scripts.
    if (/^(npm_|pnpm_|VITEST|NODE_OPTIONS$|NODE_PATH$|NODE_ENV$)/i.test(k)) continue;
    env[k] = v;
  }
  return { ...env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false", ...extra };
}

function pnpmCommand(): { file: string; args: string[] } {
  const execpath = process.env.npm_execpath;
  if (execpath && /pnpm/.test(path.basename(execpath))) return /\.c?js$/.test(execpath) ? { file: process.execPath, args: [execpath] } : { file: execpath, args: [] };
  return { file: "pnpm", args: [] };
}

/** `pnpm pack`s every publishable package into `dest`; returns name -> tarball. */
export function packWorkspace(dest: string): Record<string, string> {
  const pnpm = pnpmCommand();
  const tarballs: Record<string, string> = {};
  for (const pkg of publishablePackages()) {
    const before = new Set(readdirSync(dest));
    const res = spawnSync(pnpm.file, [...pnpm.args, "pack", "--pack-destination", dest], { cwd: pkg.dir, encoding: "utf8", env: cleanEnv() });
    if (res.status !== 0) throw new Error(`pnpm pack failed in ${pkg.dir}:\n${res.stdout}\n${res.stderr}`);
    const made = readdirSync(dest).filter((f) => f.endsWith(".tgz") && !before.has(f));
    if (made.length !== 1) throw new Error(`pnpm pack in ${pkg.dir} made ${made.length} tarballs`);
    tarballs[pkg.name] = path.join(dest, made[0]);
  }
  return tarballs;
}

/** Files of a tarball: path (without the leading package/) -> content. */
export function tarballFiles(tarball: string): Map<string, Buffer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "leanvision-tgz-"));
  try {
    execFileSync("tar", ["xzf", tarball, "-C", dir]);
    const files = new Map<string, Buffer>();
    const walk = (d: string) => {
      for (const name of readdirSync(d).sort()) {
        const p = path.join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else files.set(path.relative(path.join(dir, "package"), p).split(path.sep).join("/"), readFileSync(p));
      }
    };
    walk(dir);
    return files;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function contentKey(tarballs: Record<string, string>, installArgs: string[]): string {
  const h = createHash("sha256");
  h.update(installArgs.join(" "));
  for (const name of Object.keys(tarballs).sort()) {
    h.update(`\0${name}`);
    for (const [file, data] of tarballFiles(tarballs[name])) h.update(`\0${file}\0`).update(data);
  }
  return h.digest("hex").slice(0, 16);
}

function cacheRoot(): string {
  return path.resolve(process.env.LEANVISION_CACHE_DIR || path.join(os.homedir(), ".cache", "leanvision"));
}

/** Registry packages installed beside the tarballs: node-llama-cpp, its CPU binaries, sharp's binaries, transformers.js. */
function registryPackages(packages: WorkspacePackage[]): string[] {
  const peers: Record<string, string> = {};
  for (const p of packages) Object.assign(peers, p.manifest.peerDependencies ?? {});
  const specs: string[] = [];
  const platform = `${process.platform}-${process.arch}`;
  const nlc = peers["node-llama-cpp"];
  if (nlc) specs.push(`node-llama-cpp@${nlc}`, `@node-llama-cpp/${platform}@${nlc}`);
  if (peers["@huggingface/transformers"]) specs.push(`@huggingface/transformers@${peers["@huggingface/transformers"]}`);
  const sharp = packages.map((p) => p.manifest.dependencies?.sharp).find(Boolean);
  if (sharp) {
    const view = spawnSync("npm", ["view", `sharp@${sharp}`, "optionalDependencies", "--json"], { encoding: "utf8", env: cleanEnv() });
    if (view.status !== 0) throw new Error(`npm view sharp@${sharp} failed: ${view.stderr}`);
    const optional = JSON.parse(view.stdout) as Record<string, string>;
    for (const name of [`@img/sharp-${platform}`, `@img/sharp-libvips-${platform}`]) if (optional[name]) specs.push(`${name}@${optional[name]}`);
  }
  return specs;
}

/** Whether npm can reach its registry (one lookup); a reason to skip otherwise. */
export function registryUnreachable(): string | undefined {
  const res = spawnSync("npm", ["view", "node-llama-cpp", "version"], { encoding: "utf8", env: cleanEnv(), timeout: 90_000 });
  if (res.error) return `npm cannot run: ${res.error.message}`;
  if (res.status !== 0) return `the npm registry is not reachable (npm view node-llama-cpp version: ${res.stderr.trim().split("\n").at(-1)})`;
  return undefined;
}

let pending: Promise<NpmApp> | undefined;

/** Packs the workspace and returns the installed app for that content, installing it when new. */
export function ensureNpmApp(): Promise<NpmApp> {
  pending ??= createApp();
  return pending;
}

async function createApp(): Promise<NpmApp> {
  const packages = publishablePackages();
  const packs = mkdtempSync(path.join(os.tmpdir(), "leanvision-packs-"));
  try {
    const packed = packWorkspace(packs);
    const registry = registryPackages(packages);
    const key = contentKey(packed, registry);
    const base = path.join(cacheRoot(), "npm-consumer");
    const dir = path.join(base, key);
    const infoFile = path.join(dir, "leanvision-test.json");
    if (existsSync(infoFile)) return JSON.parse(readFileSync(infoFile, "utf8")) as NpmApp;

    // A fresh app; older ones (other content) are removed.
    if (existsSync(base)) for (const old of readdirSync(base)) rmSync(path.join(base, old), { recursive: true, force: true });
    mkdirSync(path.join(dir, "tarballs"), { recursive: true });
    const tarballs: Record<string, string> = {};
    for (const [name, file] of Object.entries(packed)) {
      tarballs[name] = path.join(dir, "tarballs", path.basename(file));
      cpSync(file, tarballs[name]);
    }
    writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "leanvision-npm-consumer", version: "1.0.0", private: true, type: "module" }, null, 2) + "\n");
    const args = ["install", "--omit=optional", "--no-audit", "--no-fund", ...Object.values(tarballs).map((t) => `./tarballs/${path.basename(t)}`), ...registry];
    const command = `npm ${args.join(" ")}`;
    const started = Date.now();
    const { output, tty, status } = await runNpm(dir, args);
    if (status !== 0) throw new Error(`${command} failed (exit ${status}) in ${dir}:\n${output.slice(-6000)}`);
    const app: NpmApp = { dir, tarballs, installOutput: output, installTty: tty, installSeconds: (Date.now() - started) / 1000, installCommand: command };
    writeFileSync(infoFile, JSON.stringify(app, null, 2));
    return app;
  } finally {
    rmSync(packs, { recursive: true, force: true });
  }
}

/** Runs npm in `dir`, through `script` (a pseudo-terminal, as in a user's shell) when it is installed. */
function runNpm(dir: string, args: string[]): Promise<{ output: string; tty: boolean; status: number | null }> {
  const env = cleanEnv({ ONNXRUNTIME_NODE_INSTALL: "skip" });
  const hasScript = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;
  const quoted = ["npm", ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const [file, argv] = hasScript ? ["script", ["-qefc", quoted, "/dev/null"]] : ["npm", args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv as string[], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20 * 60_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ output: stripAnsi(output), tty: hasScript, status });
    });
  });
}

/**
 * Roughly what a terminal shows for `raw`: npm's spinner frames dropped, "cursor back n" deleting the
 * n characters before it, other escape sequences dropped, `\r` starting the line over.
 */
export function stripAnsi(raw: string): string {
  return raw
    .split(/\r?\n/)
    .map((line) => {
      let shown = "";
      // eslint-disable-next-line no-control-regex
      for (const part of line.split(/(\u001b\[[0-9;?]*[A-Za-z]|\r)/)) {
        if (part === "\r") shown = "";
        else if (/^\u001b\[\d*D$/.test(part)) shown = shown.slice(0, Math.max(0, shown.length - Number(part.slice(2, -1) || 1)));
        else if (!part.startsWith("\u001b")) shown += part;
      }
      return shown.replace(/[\u2800-\u28ff]/g, "");
    })
    .join("\n");
}

/** Runs `node <file>` in the app; resolves with the exit status and output, killing it after `timeoutMs`. */
export function runNode(cwd: string, file: string, timeoutMs: number, env: Record<string, string> = {}): Promise<{ status: number | null; output: string; timedOut: boolean; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [file], { cwd, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let timedOut = false;
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, output, timedOut, seconds: (Date.now() - started) / 1000 });
    });
  });
}
