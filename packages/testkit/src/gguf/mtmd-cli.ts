// Stock llama.cpp's llama-mtmd-cli, built once from node-llama-cpp's bundled source. It checks that a
// profile's pair really loads and encodes an image in llama.cpp's own vision code, and it is the
// benchmark's "stock llama.cpp" anchor. The build takes minutes on 2 cores, so tests never trigger it.
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { LeanVisionError } from "@leanvision/core";
import { defaultCacheDir } from "./factory.js";
import { bundledLlamaCommit, ensureLlamaSource } from "./llama-source.js";
import { parseMtmdLog } from "./mtmd-log.js";

export interface MtmdCliOptions {
  cacheDir?: string;
  /** Build output lines (cmake and compiler); by default they only go to <dir>/build.log. */
  onLog?: (line: string) => void;
}

const CMAKE_FLAGS = [
  "-DCMAKE_BUILD_TYPE=Release",
  "-DLLAMA_CURL=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=OFF",
  "-DLLAMA_BUILD_SERVER=OFF",
  "-DGGML_NATIVE=ON",
  "-DBUILD_SHARED_LIBS=OFF", // one self-contained binary, independent of node-llama-cpp's libraries
];

/** Directory the binary for the bundled llama.cpp commit is built in. */
export function mtmdCliDir(cacheDir = defaultCacheDir()): string {
  return path.join(path.resolve(cacheDir), `llama-mtmd-cli-${bundledLlamaCommit().slice(0, 12)}`);
}

/**
 * Returns the path of a llama-mtmd-cli built from the exact llama.cpp source node-llama-cpp 3.22.1
 * ships, building it first if needed (cmake, Release, native CPU flags). Concurrent callers wait for
 * the one build.
 */
export async function ensureMtmdCli(opts: MtmdCliOptions = {}): Promise<string> {
  const dir = mtmdCliDir(opts.cacheDir);
  const binary = path.join(dir, "build", "bin", "llama-mtmd-cli");
  const doneMarker = path.join(dir, "built");
  if (existsSync(doneMarker) && existsSync(binary)) return binary;

  mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, "build.lock");
  while (!tryLock(lock)) {
    await new Promise((resolve) => setTimeout(resolve, 5000));
    if (existsSync(doneMarker) && existsSync(binary)) return binary;
  }
  try {
    const source = ensureLlamaSource();
    const log = createWriteStream(path.join(dir, "build.log"), { flags: "a" });
    const jobs = String(Math.max(1, os.availableParallelism()));
    try {
      await run("cmake", ["-S", source, "-B", path.join(dir, "build"), ...CMAKE_FLAGS], log, opts.onLog);
      await run("cmake", ["--build", path.join(dir, "build"), "--config", "Release", "--target", "llama-mtmd-cli", "-j", jobs], log, opts.onLog);
    } finally {
      log.end();
    }
    if (!existsSync(binary)) throw new LeanVisionError("NATIVE_BUILD", `cmake finished but ${binary} is missing; see ${path.join(dir, "build.log")}`);
    writeFileSync(doneMarker, `${binary}\n`);
    return binary;
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Result of one llama-mtmd-cli run, parsed from its log. */
export interface MtmdCliRun {
  /** Visual tokens the image became (sum of n_tokens_batch over its batches). */
  imageTokens: number;
  /** Vision encoder + projector time, as llama.cpp logs it. */
  encodeMs: number;
  /** Language-model decode time of the image embeddings. */
  imageDecodeMs: number;
  /** Tokens llama.cpp counted as prompt (text + image) and the time it reports for them. */
  promptTokens: number;
  promptEvalMs: number;
  /** The generated text. */
  output: string;
  log: string;
}

/** Runs llama-mtmd-cli on one image with greedy decoding and parses the image token count and timings. */
export async function runMtmdCli(args: {
  binary: string;
  modelPath: string;
  mmprojPath: string;
  image: string;
  prompt?: string;
  nPredict?: number;
  threads?: number;
}): Promise<MtmdCliRun> {
  const argv = [
    "-m", args.modelPath, "--mmproj", args.mmprojPath, "--image", args.image,
    "-p", args.prompt ?? "Describe the image.", "-n", String(args.nPredict ?? 4),
    "--temp", "0", "--seed", "1", "-c", "4096",
    "-lv", "4", // info level: the image token count and timings are logged there
    ...(args.threads ? ["-t", String(args.threads)] : []),
  ];
  const { code, stdout, stderr } = await capture(args.binary, argv);
  const log = `${stderr}\n${stdout}`;
  if (code !== 0) throw new LeanVisionError("NATIVE_BUILD", `llama-mtmd-cli exited with ${code}:\n${log.slice(-4000)}`);
  const parsed = parseMtmdLog(log);
  return {
    imageTokens: parsed.visualTokens,
    encodeMs: parsed.encodeMs,
    imageDecodeMs: parsed.imageDecodeMs,
    promptTokens: parsed.promptTokens,
    promptEvalMs: parsed.prefillMs,
    output: stdout,
    log,
  };
}

function tryLock(lock: string): boolean {
  try {
    writeFileSync(lock, String(process.pid), { flag: "wx" });
    return true;
  } catch {
    // A lock left by a process that died does not block forever.
    const holder = Number(readFileSync(lock, "utf8"));
    if (!isAlive(holder)) {
      rmSync(lock, { force: true });
      return tryLock(lock);
    }
    return false;
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function run(command: string, args: string[], log: NodeJS.WritableStream, onLog?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    log.write(`$ ${command} ${args.join(" ")}\n`);
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const forward = (chunk: Buffer) => {
      log.write(chunk);
      if (onLog) for (const line of chunk.toString().split("\n")) if (line) onLog(line);
    };
    child.stdout.on("data", forward);
    child.stderr.on("data", forward);
    child.on("error", (err) => reject(new LeanVisionError("NATIVE_BUILD", `Cannot run ${command} (${err.message}); install cmake and a C++ compiler`, { cause: err })));
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new LeanVisionError("NATIVE_BUILD", `${command} ${args.slice(0, 2).join(" ")} failed with exit code ${code}; see the build log`));
    });
  });
}

function capture(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", (err) => reject(new LeanVisionError("NATIVE_BUILD", `Cannot run ${command}: ${err.message}`, { cause: err })));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
