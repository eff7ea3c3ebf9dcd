#!/usr/bin/env node
// Decode time and peak RSS for large images, full size versus shrink-on-load (`fit`), each run in a
// fresh child process so peak RSS is its own. Needs `pnpm build` (imports ../dist).
//   node packages/image/bench/decode-large.mjs [--size 16000] [--fit 336,1344] [--runs 1]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseArgs } from "node:util";

const HERE = fileURLToPath(new URL(".", import.meta.url));

if (process.argv[2] === "--child") {
  const [, , , path, mode] = process.argv;
  const { decodeImage } = await import("../dist/index.js");
  const before = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  let result;
  try {
    const fit = mode === "full" || mode === "default" ? undefined : { width: Number(mode), height: Number(mode) };
    const img = await decodeImage(path, mode === "default" ? {} : { maxPixels: Infinity, fit });
    result = { width: img.width, height: img.height };
  } catch (error) {
    result = { error: error.code ?? error.message };
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ...result, ms, startRssMB: before / 1024, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

const { values } = parseArgs({
  options: { size: { type: "string", default: "16000" }, fit: { type: "string", default: "336,1344" }, runs: { type: "string", default: "1" } }
});
const size = Number(values.size);
const fits = values.fit.split(",").map(Number);
const runs = Number(values.runs);

const { default: sharp } = await import("sharp");
const dir = join(HERE, "../.cache");
mkdirSync(dir, { recursive: true });
const files = { jpeg: join(dir, `large-${size}.jpg`), png: join(dir, `large-${size}.png`) };
if (!existsSync(files.jpeg) || !existsSync(files.png)) {
  // A 3×3 pattern blown up smoothly: photo-like compressed sizes, the full pixel count to decode.
  const seed = Buffer.from([200, 40, 30, 30, 90, 210, 240, 220, 40, 20, 150, 60, 120, 120, 120, 250, 250, 250, 10, 10, 10, 90, 60, 30, 160, 200, 240]);
  const big = () => sharp(seed, { raw: { width: 3, height: 3, channels: 3 } }).resize(size, size, { kernel: "cubic" });
  console.log(`writing ${size}×${size} test images to ${dir} (once)…`);
  await big().jpeg({ quality: 90 }).toFile(files.jpeg);
  await big().png({ compressionLevel: 6 }).toFile(files.png);
}

console.log(`${size}×${size} (${((size * size) / 1e6).toFixed(0)} MP); ${runs} run(s) each, one fresh process per run; ${sharp.versions.vips} libvips`);
console.log("format  file MB  mode          output        ms (median)  peak RSS MB");
for (const [format, path] of Object.entries(files)) {
  for (const mode of ["default", "full", ...fits.map(String)]) {
    const results = [];
    for (let r = 0; r < runs; r++) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--child", path, mode], { encoding: "utf8" });
      results.push(JSON.parse(out.trim().split("\n").pop()));
    }
    results.sort((a, b) => a.ms - b.ms);
    const mid = results[results.length >> 1];
    const label = mode === "default" ? "default limit" : mode === "full" ? "full size" : `fit ${mode}`;
    const output = mid.error ? mid.error : `${mid.width}×${mid.height}`;
    const peak = Math.max(...results.map((x) => x.peakRssMB));
    console.log(
      `${format.padEnd(7)} ${(statSync(path).size / 2 ** 20).toFixed(1).padStart(7)}  ${label.padEnd(13)} ${output.padEnd(13)} ${mid.ms.toFixed(0).padStart(11)}  ${peak.toFixed(0).padStart(11)}`
    );
  }
}
