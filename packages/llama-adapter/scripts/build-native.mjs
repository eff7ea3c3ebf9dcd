#!/usr/bin/env node
// Builds the LeanVision native addon (build/native/<binsKey>/leanvision.node).
//
// What it compiles: llama.cpp's tools/mtmd (clip + mtmd) from the exact source node-llama-cpp 3.22.1
// ships (see llama-source.mjs), plus src/native/*.cpp. What it links to: node-llama-cpp's own shared
// libraries (libllama, libggml, libggml-base), by soname, so at run time the addon shares the very
// instances node-llama-cpp loaded. No network, no node-gyp: the compiler is driven directly.
//
// Objects are cached under build/obj (rebuilt when a source, a header it includes, or the flags
// change), so a second run is a no-op. One addon is linked per node-llama-cpp binaries directory
// found (the prebuilt packages installed for this platform, and local builds), recorded in
// build/native/manifest.json, which src/native-binding.ts reads at run time.
//
// Usage: node scripts/build-native.mjs [--bins <dir-with-libllama>]... [--jobs N] [--verbose] [--install]
//          [--no-vision-cpu] [--local-llama | --remove-local-llama]
// --install (the package's install script): a failed build warns instead of failing `pnpm install`;
// loading the addon then fails with NATIVE_BUILD and says to run this script.
// --no-vision-cpu: mtmd runs on node-llama-cpp's own CPU backend instead of the one compiled here
// (src/native/cpu-backend.h).
// --local-llama: first builds node-llama-cpp itself from its bundled source for this machine (CPU,
// `node-llama-cpp source download --gpu false`: minutes), which node-llama-cpp then prefers over its
// prebuilt binaries, then the addon for it. --remove-local-llama removes that build again (back to the
// prebuilt binaries). Both: `pnpm --filter @leanvision/llama-adapter build-native -- --local-llama`.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureLlamaSource, bundledLlamaCommit, nodeLlamaCppDir, nodeLlamaCppVersion } from "./llama-source.mjs";

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = path.join(adapterDir, "build");
const REQUIRED_NODE_LLAMA_CPP = "3.22.1";

const { values: args } = parseArgs({
  // `pnpm ... build-native -- --local-llama` hands the script a literal "--"
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    bins: { type: "string", multiple: true, default: [] },
    jobs: { type: "string" },
    verbose: { type: "boolean", default: false },
    install: { type: "boolean", default: false },
    // --no-vision-cpu: mtmd runs on node-llama-cpp's own CPU backend (its prebuilt libggml-cpu-*.so)
    "vision-cpu": { type: "boolean", default: true },
    "local-llama": { type: "boolean", default: false },
    "remove-local-llama": { type: "boolean", default: false }
  },
  allowNegative: true
});
const log = (msg) => console.log(`[leanvision native] ${msg}`);
const started = Date.now();

try {
  await main();
} catch (err) {
  console.error(`[leanvision native] build failed: ${err.message}`);
  console.error(`[leanvision native] fix the cause above, then run: node ${path.join(adapterDir, "scripts", "build-native.mjs")}`);
  process.exit(args.install ? 0 : 1);
}

async function main() {
  if (process.platform !== "linux") {
    // The sources are portable, but this script only knows Linux's compiler and linker flags.
    throw new Error(`building the native addon on ${process.platform} is not supported yet (Linux only)`);
  }
  const version = nodeLlamaCppVersion();
  if (version !== REQUIRED_NODE_LLAMA_CPP) {
    throw new Error(`node-llama-cpp ${version} is installed; LeanVision is built against exactly ${REQUIRED_NODE_LLAMA_CPP}`);
  }
  const llamaSrc = ensureLlamaSource();
  const nlcDir = nodeLlamaCppDir();
  if (args["local-llama"] && args["remove-local-llama"]) throw new Error("--local-llama and --remove-local-llama exclude each other");
  if (args["remove-local-llama"]) removeLocalLlama(nlcDir);
  if (args["local-llama"]) await buildLocalLlama(nlcDir);
  const binsDirs = args.bins.length > 0 ? args.bins.map((d) => path.resolve(d)) : findBinsDirs(nlcDir);
  if (binsDirs.length === 0) throw new Error(`no node-llama-cpp binaries (libllama) found for ${process.platform}-${process.arch}; pass --bins <dir>`);

  const includeDirs = [
    path.join(llamaSrc, "include"),
    path.join(llamaSrc, "ggml", "include"),
    path.join(llamaSrc, "tools", "mtmd"),
    path.join(llamaSrc, "vendor"),
    path.join(nlcDir, "llama", "addon"), // node-llama-cpp's AddonContext.h, for inject.cpp
    nodeAddonApiDir(),
    nodeIncludeDir()
  ];
  // -O3 as llama.cpp's own Release builds (mtmd's image preprocessing is plain C++ loops).
  const common = ["-O3", "-fPIC", "-pthread", "-fvisibility=hidden", "-DNDEBUG", "-DLLAMA_SHARED", "-DGGML_SHARED", "-w"];
  const cxx = [...common, "-std=c++17", "-DNAPI_VERSION=7", "-DNAPI_CPP_EXCEPTIONS", ...includeDirs.map((d) => `-I${d}`)];

  // The vision graph's own CPU backend: ggml's CPU backend from the same source, compiled here with
  // this machine's compiler for its instruction set tier (src/native/cpu-backend.cpp says why).
  const cpu = args["vision-cpu"] ? visionCpuTier() : null;
  const ownDefs = cpu ? ["-DLEANVISION_OWN_CPU=1", `-DLEANVISION_CPU_TIER="${cpu.tier}"`, `-DLEANVISION_CPU_CHECK=${cpu.check}`] : [];

  const mtmd = path.join(llamaSrc, "tools", "mtmd");
  const ownSources = readdirSync(path.join(adapterDir, "src", "native")).filter((f) => f.endsWith(".cpp")).sort();
  const units = [
    // mtmd's library sources (the CMake target minus the helpers, which we don't use)
    ...["mtmd.cpp", "mtmd-audio.cpp", "mtmd-image.cpp", "clip.cpp"].map((f) => ({ src: path.join(mtmd, f), flags: cxx })),
    ...readdirSync(path.join(mtmd, "models")).filter((f) => f.endsWith(".cpp")).sort()
      .map((f) => ({ src: path.join(mtmd, "models", f), flags: cxx })),
    ...ownSources.map((f) => ({ src: path.join(adapterDir, "src", "native", f), flags: [...cxx, `-I${path.join(llamaSrc, "ggml", "src")}`, ...ownDefs], own: true })),
    ...(cpu ? ggmlCpuUnits(llamaSrc, common, cpu) : [])
  ];
  if (cpu) log(`vision CPU backend: ggml's, compiled for ${cpu.tier} (${cpu.flags.join(" ")})`);
  const hasInject = ownSources.includes("inject.cpp");

  const objDir = path.join(buildDir, "obj");
  mkdirSync(objDir, { recursive: true });
  const jobs = args.jobs === undefined ? Math.max(1, os.availableParallelism()) : Number(args.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs needs a positive integer (got ${args.jobs})`);
  const objects = await compileAll(units, objDir, jobs);

  const manifest = { nodeLlamaCpp: version, llamaCommit: bundledLlamaCommit(), addons: [] };
  for (const binsDir of binsDirs) {
    const entry = linkAddon(objects, binsDir, { hasInject });
    manifest.addons.push(entry);
  }
  await Promise.all(manifest.addons.map((a) => a.pending));
  for (const a of manifest.addons) delete a.pending;
  writeAtomic(path.join(buildDir, "native", "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${manifest.addons.map((a) => path.relative(adapterDir, a.addon)).join(", ")}`);
}

/**
 * The x86 instruction-set tier of this machine, as ggml's CPU variants name them (the highest whose
 * features /proc/cpuinfo lists), with the compiler flags, ggml's defines, and the runtime check
 * (cpu-backend.cpp refuses the backend on a CPU without them, e.g. when node_modules was copied).
 * null where there is none (not x86-64 Linux, or no AVX2): mtmd then uses node-llama-cpp's backend.
 */
function visionCpuTier() {
  if (process.arch !== "x64") return null;
  let cpuFlags;
  try {
    cpuFlags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").trim().split(/\s+/));
  } catch {
    return null;
  }
  // [cpuinfo flag, gcc flag, ggml define, __builtin_cpu_supports name]
  const F = {
    sse42: ["sse4_2", "-msse4.2", "GGML_SSE42", "sse4.2"], avx: ["avx", "-mavx", "GGML_AVX", "avx"], f16c: ["f16c", "-mf16c", "GGML_F16C", null],
    fma: ["fma", "-mfma", "GGML_FMA", "fma"], avx2: ["avx2", "-mavx2", "GGML_AVX2", "avx2"], bmi2: ["bmi2", "-mbmi2", "GGML_BMI2", "bmi2"],
    avxvnni: ["avx_vnni", "-mavxvnni", "GGML_AVX_VNNI", "avxvnni"],
    avx512: ["avx512f", "-mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw", "GGML_AVX512", "avx512f avx512cd avx512vl avx512dq avx512bw"],
    avx512vbmi: ["avx512vbmi", "-mavx512vbmi", "GGML_AVX512_VBMI", "avx512vbmi"],
    avx512vnni: ["avx512_vnni", "-mavx512vnni", "GGML_AVX512_VNNI", "avx512vnni"],
    avx512bf16: ["avx512_bf16", "-mavx512bf16", "GGML_AVX512_BF16", "avx512bf16"]
  };
  const haswell = ["sse42", "avx", "f16c", "fma", "avx2", "bmi2"];
  const tiers = [
    ["zen4", [...haswell, "avx512", "avx512vbmi", "avx512vnni", "avx512bf16"]],
    ["icelake", [...haswell, "avx512", "avx512vbmi", "avx512vnni"]],
    ["skylakex", [...haswell, "avx512"]],
    ["alderlake", [...haswell, "avxvnni"]],
    ["haswell", haswell]
  ];
  const avx512Parts = ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"];
  const has = (f) => (f === "avx512" ? avx512Parts.every((p) => cpuFlags.has(p)) : cpuFlags.has(F[f][0]));
  const found = tiers.find(([, features]) => features.every(has));
  if (!found) return null;
  const [tier, features] = found;
  return {
    tier,
    flags: features.flatMap((f) => F[f][1].split(" ")),
    defines: features.map((f) => `-D${F[f][2]}`),
    check: features.flatMap((f) => (F[f][3] ? F[f][3].split(" ") : [])).map((n) => `X("${n}")`).join("")
  };
}

/** ggml's CPU backend sources (the ggml-cpu CMake target for x86, without the DL scoring). */
function ggmlCpuUnits(llamaSrc, common, cpu) {
  const dir = path.join(llamaSrc, "ggml", "src", "ggml-cpu");
  const includes = [path.join(llamaSrc, "ggml", "include"), path.join(llamaSrc, "ggml", "src"), dir].map((d) => `-I${d}`);
  const defs = ["-D_GNU_SOURCE", "-D_XOPEN_SOURCE=600", "-DGGML_USE_LLAMAFILE", "-DGGML_USE_CPU_REPACK", "-DGGML_SCHED_MAX_COPIES=4", ...cpu.defines];
  const base = [...common, ...cpu.flags, ...defs, ...includes];
  const files = ["ggml-cpu.c", "ggml-cpu.cpp", "repack.cpp", "iqp.cpp", "hbm.cpp", "quants.c", "traits.cpp", "amx/amx.cpp", "amx/mmq.cpp",
    "binary-ops.cpp", "unary-ops.cpp", "vec.cpp", "ops.cpp", "llamafile/sgemm.cpp", "arch/x86/quants.c", "arch/x86/repack.cpp"];
  return files.filter((f) => existsSync(path.join(dir, f))).map((f) => ({
    src: path.join(dir, f),
    flags: f.endsWith(".c") ? [...base, "-std=c11"] : [...base, "-std=c++17"]
  }));
}

/**
 * node-llama-cpp built from its own bundled llama.cpp source (offline: llama/gitRelease.bundle), CPU
 * only, by node-llama-cpp's CLI. It lands in node-llama-cpp/llama/localBuilds/, which getLlama()
 * then prefers to the prebuilt binaries (with any `build` option).
 */
async function buildLocalLlama(nlcDir) {
  const cli = path.join(nlcDir, "dist", "cli", "cli.js");
  log("building node-llama-cpp from its bundled llama.cpp source for this machine (CPU; minutes)");
  const t0 = Date.now();
  await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, "source", "download", "--gpu", "false", "--noUsageExample"], { stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`node-llama-cpp source download --gpu false exited with ${code}`))));
  });
  log(`node-llama-cpp built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/**
 * Undoes buildLocalLlama: the local builds, the llama.cpp checkout and the last-build record
 * node-llama-cpp keeps (the files its package ships stay as they are).
 */
function removeLocalLlama(nlcDir) {
  const llamaDir = path.join(nlcDir, "llama");
  for (const entry of ["localBuilds", "llama.cpp", "lastBuild.json"]) {
    const target = path.join(llamaDir, entry);
    if (!existsSync(target)) continue;
    rmSync(target, { recursive: true, force: true });
    log(`removed ${target}`);
  }
}

/** Prebuilt binaries of the installed @node-llama-cpp/<platform>-<arch>* packages, plus local builds. */
function findBinsDirs(nlcDir) {
  const found = [];
  const scopeDir = path.join(path.dirname(nlcDir), "@node-llama-cpp");
  const prefix = `${process.platform}-${process.arch}`;
  if (existsSync(scopeDir)) {
    for (const pkg of readdirSync(scopeDir).filter((n) => n === prefix || n.startsWith(`${prefix}-`))) {
      const bins = path.join(scopeDir, pkg, "bins");
      if (!existsSync(bins)) continue;
      for (const sub of readdirSync(bins)) found.push(path.join(bins, sub));
    }
  }
  const localBuilds = path.join(nlcDir, "llama", "localBuilds");
  if (existsSync(localBuilds)) {
    for (const build of readdirSync(localBuilds)) found.push(path.join(localBuilds, build, "Release"));
  }
  return found.filter((dir) => libllamaIn(dir) != null).map((dir) => realpathSync(dir));
}

function libllamaIn(dir) {
  if (!existsSync(dir)) return null;
  return readdirSync(dir).find((f) => /^libllama(\.v[\d.]+)?\.so$/.test(f)) ?? null;
}

/** Key of a binaries directory: the addon for it lives in build/native/<key>/. */
function binsKey(binsDir) {
  return createHash("sha256").update(realpathSync(binsDir)).digest("hex").slice(0, 16);
}

async function compileAll(units, objDir, jobs) {
  const todo = [];
  const objects = [];
  for (const unit of units) {
    const flagsHash = createHash("sha256").update(unit.flags.join(" ")).digest("hex").slice(0, 8);
    const base = `${path.basename(path.dirname(unit.src))}_${path.basename(unit.src)}`.replace(/\.cpp$|\.c$/, "");
    const obj = path.join(objDir, `${base}.${flagsHash}.o`);
    objects.push(obj);
    if (!upToDate(obj)) todo.push({ ...unit, obj });
  }
  if (todo.length === 0) {
    log(`all ${units.length} objects up to date`);
    return objects;
  }
  log(`compiling ${todo.length} of ${units.length} sources with ${jobs} job(s)`);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const unit = todo[next++];
      const compiler = unit.src.endsWith(".c") ? "cc" : "c++";
      const tmp = `${unit.obj}.tmp`;
      await run(compiler, [...unit.flags, "-MMD", "-MF", `${unit.obj}.d`, "-c", unit.src, "-o", tmp]);
      renameSync(tmp, unit.obj);
      if (args.verbose || unit.own) log(`compiled ${path.basename(unit.src)}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
  return objects;
}

/** An object is up to date when it is newer than its source and every header its .d file lists. */
function upToDate(obj) {
  if (!existsSync(obj) || !existsSync(`${obj}.d`)) return false;
  const objTime = statSync(obj).mtimeMs;
  const deps = readFileSync(`${obj}.d`, "utf8").replace(/\\\n/g, " ").split(":").slice(1).join(":").trim().split(/\s+/);
  return deps.every((dep) => existsSync(dep) && statSync(dep).mtimeMs <= objTime);
}

function linkAddon(objects, binsDir, { hasInject }) {
  const libllama = libllamaIn(binsDir);
  if (libllama == null) throw new Error(`no libllama*.so in ${binsDir}`);
  const libs = readdirSync(binsDir);
  const libggml = libs.find((f) => /^libggml(\.v[\d.]+)?\.so$/.test(f));
  const libggmlBase = libs.find((f) => f === "libggml-base.so");
  if (!libggml || !libggmlBase) throw new Error(`${binsDir} lacks libggml*.so / libggml-base.so`);

  const outDir = path.join(buildDir, "native", binsKey(binsDir));
  const addon = path.join(outDir, "leanvision.node");
  const entry = { binsDir, libllama: path.join(binsDir, libllama), addon, hasInject, pending: null };
  const inputs = [...objects, ...[libllama, libggml, libggmlBase].map((f) => path.join(binsDir, f))];
  // The list of inputs is recorded too: other flags (e.g. --no-vision-cpu) link other, older objects.
  const inputsFile = `${addon}.inputs`;
  const inputList = inputs.join("\n");
  const sameInputs = existsSync(inputsFile) && readFileSync(inputsFile, "utf8") === inputList;
  if (existsSync(addon) && sameInputs && inputs.every((f) => statSync(f).mtimeMs <= statSync(addon).mtimeMs)) {
    log(`up to date: ${path.relative(adapterDir, addon)} (for ${binsDir})`);
    entry.pending = Promise.resolve();
    return entry;
  }
  mkdirSync(outDir, { recursive: true });
  // -l: links by file name; the NEEDED entries are then those files' sonames, which node-llama-cpp's
  // addon has already loaded, so the dynamic loader reuses them. RUNPATH is only a fallback.
  const tmp = `${addon}.tmp`;
  entry.pending = run("c++", [
    "-shared", "-pthread", "-o", tmp, ...objects,
    `-L${binsDir}`, `-l:${libllama}`, `-l:${libggml}`, `-l:${libggmlBase}`,
    `-Wl,-rpath,${binsDir}`, "-Wl,-Bsymbolic", "-Wl,--as-needed"
  ]).then(() => {
    renameSync(tmp, addon);
    writeFileSync(inputsFile, inputList);
    log(`linked ${path.relative(adapterDir, addon)} against ${binsDir}`);
  });
  return entry;
}

function nodeAddonApiDir() {
  const pkg = createRequire(path.join(adapterDir, "package.json")).resolve("node-addon-api/package.json");
  return path.dirname(pkg);
}

/** Node's C headers, from the running node's install prefix (or npm_config_nodedir); never downloaded. */
function nodeIncludeDir() {
  const candidates = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, "include", "node"),
    path.join(path.dirname(path.dirname(process.execPath)), "include", "node")
  ].filter(Boolean);
  const dir = candidates.find((d) => existsSync(path.join(d, "node_api.h")));
  if (!dir) throw new Error(`node's headers (node_api.h) not found in ${candidates.join(", ")}; install them (e.g. apt-get install nodejs-dev / libnode-dev) or set npm_config_nodedir`);
  return dir;
}

function run(cmd, argv) {
  if (args.verbose) log(`${cmd} ${argv.join(" ")}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "inherit", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (err) => reject(new Error(`cannot run ${cmd}: ${err.message} (a C++17 compiler is needed)`)));
    child.on("close", (code) => {
      if (code === 0) return resolve();
      reject(new Error(`${cmd} exited with ${code} for ${argv.find((a) => a.endsWith(".cpp") || a.endsWith(".c")) ?? argv.at(-1)}\n${stderr.slice(-4000)}`));
    });
  });
}

function writeAtomic(file, text) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
