#!/usr/bin/env node
// Builds the LeanVision native addon (build/native/<binsKey>/leanvision.node).
//
// What it compiles: llama.cpp's tools/mtmd (clip + mtmd) from the exact source node-llama-cpp ships
// (see llama-source.mjs), plus src/native/*.cpp. What it links to: node-llama-cpp's own shared
// libraries (libllama, libggml, libggml-base of one binaries flavour), by soname, so at run time the
// addon shares the very instances node-llama-cpp loaded. No network, no node-gyp: the compiler is
// driven directly.
//
// Flavours: one addon is linked per node-llama-cpp binaries directory found: the prebuilt packages
// installed for this platform (@node-llama-cpp/linux-x64 = CPU, linux-x64-vulkan, linux-x64-cuda,
// ...) and node-llama-cpp's local builds (llama/localBuilds/*/Release). Their libraries are named
// lib{llama,ggml}[.<variant>].so, the variant being e.g. "v0.5.0" (CPU), "vulkan.v0.5.0",
// "cuda.v0.5.0". Objects are compiled once and shared by every flavour; build/native/manifest.json
// records which addon belongs to which libllama, and src/native-binding.ts reads it at run time.
//
// Caches: the llama.cpp checkout and the compiled objects live in LeanVision's cache
// ($LEANVISION_CACHE_DIR, else ~/.cache/leanvision), never in node_modules. Objects are keyed by
// the content of everything that goes into them (compiler, flags, sources, headers), so any install of
// the same versions reuses them, and a second run only links. When the cache cannot be written, the
// build runs in a temporary directory that is removed afterwards.
//
// Usage: node scripts/build-native.mjs [--bins <dir-with-libllama>]... [--jobs N] [--verbose] [--install]
//          [--vision-cpu] [--local-llama | --remove-local-llama]
// --bins: build for these binaries directories only (the manifest keeps the addons built before).
// --install (the package's install script): prints one line, and a failed build warns instead of
// failing the install; loading the addon then fails with NATIVE_BUILD and says to run this script.
// --local-llama: first builds node-llama-cpp itself from its bundled source for this machine (CPU,
// `node-llama-cpp source download --gpu false`: minutes), which node-llama-cpp then prefers over its
// prebuilt binaries, then the addon for it. --remove-local-llama removes that build again (back to the
// prebuilt binaries). Both: `pnpm --filter @leanvision/llama-adapter build-native -- --local-llama`.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  bundledLlamaCommit,
  checkGit,
  checkNodeLlamaCppVersion,
  describeBinsDir,
  ensureLlamaSource,
  leanvisionCacheDir,
  libllamaIn,
  nodeLlamaCppDir
} from "./llama-source.mjs";

const adapterDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = path.join(adapterDir, "build");
const manifestPath = path.join(buildDir, "native", "manifest.json");
const selfCommand = `node ${path.join(adapterDir, "scripts", "build-native.mjs")}`;
// Average compile time of one mtmd translation unit on one core of the 2-core dev machine (51 units, ~80 s on 2 jobs).
const SECONDS_PER_UNIT = 3;

const { values: args } = parseArgs({
  // `pnpm ... build-native -- --local-llama` hands the script a literal "--"
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    bins: { type: "string", multiple: true, default: [] },
    jobs: { type: "string" },
    verbose: { type: "boolean", default: false },
    install: { type: "boolean", default: false },
    // --vision-cpu (or LEANVISION_VISION_CPU=1 at install): mtmd runs on ggml's CPU backend compiled
    // here for this machine (src/native/cpu-backend.cpp says why); without it, on node-llama-cpp's own.
    "vision-cpu": { type: "boolean", default: process.env.LEANVISION_VISION_CPU === "1" },
    "local-llama": { type: "boolean", default: false },
    "remove-local-llama": { type: "boolean", default: false }
  },
  allowNegative: true
});
const started = Date.now();
const out = openOutput();
const log = (msg) => {
  if (args.verbose || !args.install) console.log(`[leanvision native] ${msg}`);
};

try {
  await main();
} catch (err) {
  const reason = err.message.split("\n")[0];
  if (out.isOpen()) out.end(` failed: ${reason}`);
  else if (args.install) out.line(`[leanvision] cannot build the native addon of @leanvision/llama-adapter: ${reason}`);
  console.error(`[leanvision native] build failed: ${err.message}`);
  console.error(`[leanvision native] fix the cause above, then run: ${selfCommand}`);
  if (args.install) {
    out.line(`[leanvision] the llama adapter will not load until the native addon is built: fix the cause above, then run ${selfCommand}`);
  }
  process.exitCode = args.install ? 0 : 1;
} finally {
  out.close();
}

async function main() {
  if (process.platform !== "linux") {
    // The sources are portable, but this script only knows Linux's compiler and linker flags.
    throw new Error(
      `building the LeanVision native addon on ${process.platform} is not supported yet (Linux only); ` +
        `@leanvision/llama-adapter's vision stage is unavailable on this platform`
    );
  }
  const version = checkNodeLlamaCppVersion();
  const nlcDir = nodeLlamaCppDir();
  if (args["local-llama"] && args["remove-local-llama"]) throw new Error("--local-llama and --remove-local-llama exclude each other");
  if (args["remove-local-llama"]) removeLocalLlama(nlcDir);
  if (args["local-llama"]) await buildLocalLlama(nlcDir);
  // Without --bins: every flavour installed next to node-llama-cpp, plus the folders built for before
  // with --bins (relinked too, so no addon is left behind on older objects).
  const binsDirs = args.bins.length > 0 ? args.bins.map(checkBinsArg) : [...new Set([...findBinsDirs(nlcDir), ...previousBinsDirs()])];
  if (binsDirs.length === 0) {
    throw new Error(
      `no node-llama-cpp binaries (libllama) found for ${process.platform}-${process.arch} next to ${nlcDir}; ` +
        `install node-llama-cpp's prebuilt binaries (npm install node-llama-cpp@${version} without --omit=optional, ` +
        `or add @node-llama-cpp/${process.platform}-${process.arch}@${version}) or pass --bins <dir>`
    );
  }
  const cxx = process.env.CXX || "c++";
  const compilerId = checkCompiler(cxx);
  checkGit();
  const commit = bundledLlamaCommit();
  const flavours = binsDirs.map((d) => describeBinsDir(d).label);

  // Cache (or a temporary directory, removed at the end, when the cache is not writable).
  let cacheDir = leanvisionCacheDir();
  let tempDir = null;
  try {
    mkdirSync(path.join(cacheDir, "native-obj"), { recursive: true });
  } catch (err) {
    tempDir = mkdtempSync(path.join(os.tmpdir(), "leanvision-build-"));
    log(`cache ${cacheDir} is not writable (${err.code ?? err.message}); building in ${tempDir}, removed afterwards`);
    cacheDir = tempDir;
  }
  try {
    const llamaSrc = ensureLlamaSource({ cacheDir });
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
    const cpu = args["vision-cpu"] ? visionCpuTier() : null;
    const ownDefs = cpu ? ["-DLEANVISION_OWN_CPU=1", `-DLEANVISION_CPU_TIER="${cpu.tier}"`, `-DLEANVISION_CPU_CHECK=${cpu.check}`] : [];
    const cxxFlags = [...common, "-std=c++17", "-DNAPI_VERSION=7", "-DNAPI_CPP_EXCEPTIONS", ...ownDefs];
    const includes = [...includeDirs, path.join(llamaSrc, "ggml", "src")].map((d) => `-I${d}`);

    const mtmd = path.join(llamaSrc, "tools", "mtmd");
    const nativeDir = path.join(adapterDir, "src", "native");
    const ownSources = readdirSync(nativeDir).filter((f) => f.endsWith(".cpp")).sort();
    // What own sources may include besides the llama.cpp tree (fixed by `commit`): our headers,
    // node-addon-api's, node's, node-llama-cpp's addon headers (fixed by its exact version).
    const ownHeaders = [
      ...readdirSync(nativeDir).filter((f) => /\.(h|hpp)$/.test(f)).sort().map((f) => path.join(nativeDir, f)),
      ...["napi.h", "napi-inl.h", "napi-inl.deprecated.h"].map((f) => path.join(nodeAddonApiDir(), f)),
      ...["node_api.h", "node_api_types.h", "js_native_api.h", "js_native_api_types.h", "node_version.h"].map((f) => path.join(nodeIncludeDir(), f))
    ].filter((f) => existsSync(f));
    const baseKey = hash([compilerId, cxxFlags.join(" "), commit, version].join("\n"));
    const ownKey = hash(baseKey + ownHeaders.map((f) => `${path.basename(f)}:${hash(readFileSync(f))}`).join("\n"));
    const units = [
      // mtmd's library sources (the CMake target minus the helpers, which we don't use)
      ...["mtmd.cpp", "mtmd-audio.cpp", "mtmd-image.cpp", "clip.cpp"].map((f) => ({ src: path.join(mtmd, f), key: baseKey })),
      ...readdirSync(path.join(mtmd, "models")).filter((f) => f.endsWith(".cpp")).sort()
        .map((f) => ({ src: path.join(mtmd, "models", f), key: baseKey })),
      ...ownSources.map((f) => ({ src: path.join(nativeDir, f), key: ownKey, own: true }))
    ].map((u) => ({ ...u, flags: [...cxxFlags, ...includes] }));
    // The vision graph's own CPU backend: ggml's CPU backend from the same source, for this machine's tier.
    if (cpu) {
      units.push(...ggmlCpuUnits(llamaSrc, common, cpu).map((u) => ({ ...u, key: hash([baseKey, u.flags.join(" ")].join("\n")) })));
      log(`vision CPU backend: ggml's, compiled for ${cpu.tier} (${cpu.flags.join(" ")})`);
    }
    const hasInject = ownSources.includes("inject.cpp");

    const objDir = path.join(cacheDir, "native-obj");
    mkdirSync(objDir, { recursive: true });
    const jobs = args.jobs === undefined ? Math.max(1, os.availableParallelism()) : Number(args.jobs);
    if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs needs a positive integer (got ${args.jobs})`);
    for (const unit of units) {
      const base = `${path.basename(path.dirname(unit.src))}_${path.basename(unit.src)}`.replace(/\.(cpp|c)$/, "");
      unit.obj = path.join(objDir, `${base}-${hash(unit.key + "\n" + hash(readFileSync(unit.src))).slice(0, 20)}.o`);
    }
    const todo = units.filter((u) => !existsSync(u.obj));
    const what = `the native addon for node-llama-cpp ${version} (${flavours.join(", ")} binaries)`;
    if (todo.length === 0) {
      out.start(`[leanvision] linking ${what} from cached objects, a few seconds...`);
    } else {
      const seconds = Math.ceil((todo.length * SECONDS_PER_UNIT) / jobs);
      const estimate = seconds < 90 ? `about ${Math.max(5, Math.round(seconds / 5) * 5)} s` : `about ${Math.round(seconds / 60)} min`;
      const source = todo.some((u) => !u.own) ? `llama.cpp's mtmd and ` : "";
      out.start(`[leanvision] building ${what}: compiling ${source}${todo.filter((u) => u.own).length} own sources (${todo.length} files) on ${jobs} core(s), ${estimate}; cache: ${cacheDir}...`);
    }
    await compileAll(todo, units.length, jobs, cxx);

    const manifest = readManifest(version, commit);
    const entries = await Promise.all(binsDirs.map((binsDir) => linkAddon(units.map((u) => u.obj), binsDir, { hasInject, cxx })));
    const rebuilt = new Set(entries.map((e) => e.binsDir));
    manifest.addons = [...manifest.addons.filter((a) => !rebuilt.has(a.binsDir)), ...entries];
    writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
    removeLegacyCache();
    out.end(` done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    log(`addons: ${manifest.addons.map((a) => `${a.flavour} -> ${path.join(path.dirname(manifestPath), a.addon)}`).join(", ")}`);
  } finally {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }
}

function checkBinsArg(dir) {
  const resolved = path.resolve(dir);
  if (!libllamaIn(resolved)) throw new Error(`--bins ${dir}: no libllama shared library (libllama[.<variant>].so) in ${resolved}`);
  return realpathSync(resolved);
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

/** Undoes buildLocalLlama: the local builds, the llama.cpp checkout and node-llama-cpp's last-build record. */
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
  const prefix = `${process.platform}-${process.arch}`;
  const packageDirs = new Set();
  // npm and pnpm put the prebuilt packages next to node-llama-cpp; a nested install puts them inside it.
  for (const scopeDir of [path.join(path.dirname(nlcDir), "@node-llama-cpp"), path.join(nlcDir, "node_modules", "@node-llama-cpp")]) {
    if (!existsSync(scopeDir)) continue;
    for (const name of readdirSync(scopeDir)) {
      if (name === prefix || name.startsWith(`${prefix}-`)) packageDirs.add(realpathSync(path.join(scopeDir, name)));
    }
  }
  const found = [];
  for (const pkg of packageDirs) {
    const bins = path.join(pkg, "bins");
    if (!existsSync(bins)) continue;
    for (const sub of readdirSync(bins)) found.push(path.join(bins, sub));
  }
  const localBuilds = path.join(nlcDir, "llama", "localBuilds");
  if (existsSync(localBuilds)) {
    for (const build of readdirSync(localBuilds)) found.push(path.join(localBuilds, build, "Release"));
  }
  return [...new Set(found.filter((dir) => libllamaIn(dir) != null).map((dir) => realpathSync(dir)))].sort();
}

/** Binaries folders of the current manifest that still hold their libllama. */
function previousBinsDirs() {
  try {
    const old = JSON.parse(readFileSync(manifestPath, "utf8"));
    return old.addons.filter((a) => existsSync(a.libllama)).map((a) => realpathSync(a.binsDir));
  } catch {
    return [];
  }
}

/** Key of a binaries directory: the addon for it lives in build/native/<key>/. */
function binsKey(binsDir) {
  return hash(realpathSync(binsDir)).slice(0, 16);
}

async function compileAll(todo, total, jobs, cxx) {
  if (todo.length === 0) {
    log(`all ${total} objects up to date`);
    return;
  }
  log(`compiling ${todo.length} of ${total} sources with ${jobs} job(s)`);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const unit = todo[next++];
      const compiler = unit.src.endsWith(".c") ? process.env.CC || "cc" : cxx;
      const tmp = `${unit.obj}.tmp-${process.pid}`;
      await run(compiler, [...unit.flags, "-c", unit.src, "-o", tmp]);
      renameSync(tmp, unit.obj);
      if (args.verbose || unit.own) log(`compiled ${path.basename(unit.src)}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
}

async function linkAddon(objects, binsDir, { hasInject, cxx }) {
  const bins = describeBinsDir(binsDir);
  const libs = readdirSync(binsDir);
  const libggml = libs.find((f) => f === bins.libllama.replace(/^libllama/, "libggml"));
  const libggmlBase = libs.find((f) => f === "libggml-base.so");
  if (!libggml || !libggmlBase) throw new Error(`${binsDir} has ${bins.libllama} but lacks ${bins.libllama.replace(/^libllama/, "libggml")} / libggml-base.so`);

  const key = binsKey(binsDir);
  const outDir = path.join(buildDir, "native", key);
  const addon = path.join(outDir, "leanvision.node");
  const entry = {
    flavour: bins.label,
    binsDir,
    libllama: path.join(binsDir, bins.libllama),
    addon: path.relative(path.dirname(manifestPath), addon),
    hasInject
  };
  const libFiles = [bins.libllama, libggml, libggmlBase].map((f) => path.join(binsDir, f));
  const linkArgs = [
    "-shared", "-pthread", "-o", `${addon}.tmp-${process.pid}`, ...objects,
    // -l: links by file name; the NEEDED entries are then those files' sonames, which node-llama-cpp's
    // addon has already loaded, so the dynamic loader reuses them. RUNPATH is only a fallback.
    `-L${binsDir}`, ...libFiles.map((f) => `-l:${path.basename(f)}`),
    `-Wl,-rpath,${binsDir}`, "-Wl,-Bsymbolic", "-Wl,--as-needed"
  ];
  const linkKey = hash([cxx, ...objects, ...libFiles.map((f) => `${f}:${statSync(f).size}:${statSync(f).mtimeMs}`)].join("\n"));
  const keyFile = `${addon}.key`;
  if (existsSync(addon) && existsSync(keyFile) && readFileSync(keyFile, "utf8") === linkKey) {
    log(`up to date: ${path.relative(adapterDir, addon)} (${bins.label}, ${binsDir})`);
    return entry;
  }
  mkdirSync(outDir, { recursive: true });
  await run(cxx, linkArgs);
  renameSync(`${addon}.tmp-${process.pid}`, addon);
  writeFileSync(keyFile, linkKey);
  log(`linked ${path.relative(adapterDir, addon)} against ${bins.label} binaries in ${binsDir}`);
  return entry;
}

/** The manifest so far, minus addons whose files are gone or that were built for other versions. */
function readManifest(version, commit) {
  const fresh = { nodeLlamaCpp: version, llamaCommit: commit, addons: [] };
  if (!existsSync(manifestPath)) return fresh;
  try {
    const old = JSON.parse(readFileSync(manifestPath, "utf8"));
    if (old.nodeLlamaCpp !== version || old.llamaCommit !== commit || !Array.isArray(old.addons)) return fresh;
    const dir = path.dirname(manifestPath);
    fresh.addons = old.addons.filter((a) => existsSync(a.libllama) && existsSync(path.resolve(dir, a.addon)));
  } catch {
    // unreadable: start over
  }
  return fresh;
}

/** Earlier versions cloned llama.cpp into the package itself (node_modules/@leanvision/llama-adapter/.cache). */
function removeLegacyCache() {
  const legacy = path.join(adapterDir, ".cache");
  if (!existsSync(legacy)) return;
  for (const name of readdirSync(legacy)) {
    if (name.startsWith("llama.cpp-")) rmSync(path.join(legacy, name), { recursive: true, force: true });
  }
  if (readdirSync(legacy).length === 0) rmSync(legacy, { recursive: true, force: true });
}

/** `<compiler> --version` and target, or an error saying which compiler to install. */
function checkCompiler(cxx) {
  const version = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  const target = spawnSync(cxx, ["-dumpmachine"], { encoding: "utf8" });
  if (version.error || version.status !== 0) {
    throw new Error(
      `a C++17 compiler is needed to build the native addon, but \`${cxx}\` cannot run (${version.error?.code ?? `exit ${version.status}`}); ` +
        `install one (Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; Alpine: apk add g++) or set CXX`
    );
  }
  return `${version.stdout.split("\n")[0]} ${target.stdout?.trim() ?? ""}`;
}

function nodeAddonApiDir() {
  const pkg = createRequire(path.join(adapterDir, "package.json")).resolve("node-addon-api/package.json");
  return path.dirname(pkg);
}

/** Node's C headers, from the running node's install prefix (or npm_config_nodedir); never downloaded. */
function nodeIncludeDir() {
  const candidates = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, "include", "node"),
    path.join(path.dirname(path.dirname(process.execPath)), "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node"
  ].filter(Boolean);
  const dir = candidates.find((d) => existsSync(path.join(d, "node_api.h")));
  if (!dir) {
    throw new Error(
      `node's headers (node_api.h) not found in ${candidates.join(", ")}; install them ` +
        `(Debian/Ubuntu's nodejs: apt-get install libnode-dev) or set npm_config_nodedir to a node source or headers directory`
    );
  }
  return dir;
}

function run(cmd, argv) {
  if (args.verbose) log(`${cmd} ${argv.join(" ")}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (err) => reject(new Error(`cannot run ${cmd}: ${err.message} (a C++17 compiler is needed: apt-get install g++)`)));
    child.on("close", (code) => {
      if (code === 0) return resolve();
      reject(new Error(`${cmd} exited with ${code} for ${argv.find((a) => a.endsWith(".cpp") || a.endsWith(".c")) ?? "the link"}\n${stderr.slice(-4000)}`));
    });
  });
}

function hash(data) {
  return createHash("sha256").update(data).digest("hex");
}

function writeAtomic(file, text) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp-${process.pid}`, text);
  renameSync(`${file}.tmp-${process.pid}`, file);
}

/**
 * Where the one install line goes. npm (7+) runs install scripts in the background and shows their
 * output only when they fail, so under npm the line is written to the terminal (/dev/tty) when there
 * is one; pnpm, yarn and `npm --foreground-scripts` show stdout.
 *
 * The line is written when the build starts (what it builds, how long it should take) and completed
 * when it ends ("done in 84 s"). On a terminal npm's spinner draws at the end of it meanwhile, each
 * frame stepping back one column and erasing to the end of the line: the line ends with a space for
 * it, and the ending steps back over that space or the last frame the same way.
 */
function openOutput() {
  let fd = null;
  const npmBackground =
    args.install && /^npm\//.test(process.env.npm_config_user_agent ?? "") && process.env.npm_config_foreground_scripts !== "true" && !process.stdout.isTTY;
  if (npmBackground) {
    try {
      fd = openSync("/dev/tty", "w");
    } catch {
      fd = null; // no terminal (CI): stay quiet, as npm does
    }
  }
  const terminal = fd !== null || process.stdout.isTTY;
  const write = (text) => {
    if (fd !== null) writeSync(fd, text);
    else if (!npmBackground) process.stdout.write(text);
  };
  let open = null; // the started line, until it is ended
  // Outside an install, the detailed log lines go in between: start and end are lines of their own.
  const oneLine = args.install && !args.verbose;
  return {
    isOpen: () => open !== null,
    start(text) {
      open = text;
      write(!oneLine ? `${text}\n` : terminal ? `${text} ` : text);
    },
    end(text) {
      if (open === null) return;
      write(!oneLine ? `[leanvision native]${text}\n` : terminal ? `\u001b[1D\u001b[K${text}\n` : `${text}\n`);
      open = null;
    },
    line(text) {
      if (open !== null) write("\n");
      open = null;
      write(`${text}\n`);
    },
    close() {
      if (open !== null) write("\n");
      if (fd !== null) closeSync(fd);
      fd = null;
    }
  };
}
