#!/usr/bin/env node
// pnpm bench -- --runtime llama --profile tiny --reducers none,visionzip:54+10 --turns 2 --runs 3 --json out.json
import { resolve } from "node:path";
import { LeanVisionError } from "@leanvision/core";
import { parseBenchArgs, BENCH_USAGE } from "./args.js";
import { runBenchmark, questionFor } from "./run.js";
import { describeBinaries, formatTable, writeBenchOutputs } from "./report.js";
import { runMtmdAnchor } from "./mtmd-anchor.js";
import { openRuntime } from "../lib/runtime.js";
import { progressBar } from "../lib/progress.js";

async function main(argv) {
  const options = parseBenchArgs(argv);
  if (options.help) {
    console.log(BENCH_USAGE);
    return;
  }
  const { sampleImagePath } = await import("@leanvision/testkit");
  const image = resolve(options.image ?? sampleImagePath());

  const rt = await openRuntime({ ...options, imageCacheBytes: 0, onProgress: progressBar(`writing the ${options.profile} model`) });
  let bench;
  try {
    bench = await runBenchmark(rt, {
      ...options,
      image,
      onRun: ({ reducer, run, runs }) => process.stderr.write(`  ${reducer}: run ${run}/${runs}\n`)
    });
  } finally {
    await rt.dispose();
  }

  let anchor = null;
  if (options.anchor) {
    process.stderr.write("  stock llama-mtmd-cli, all visual tokens (built from the bundled llama.cpp source on first use: minutes)\n");
    const { ensureMtmdCli } = await import("@leanvision/testkit");
    const cliPath = await ensureMtmdCli();
    anchor = await runMtmdAnchor({
      cliPath,
      modelPath: rt.description.modelPath,
      mmprojPath: rt.description.mmprojPath,
      image,
      prompt: questionFor(0),
      runs: options.runs,
      threads: rt.description.threads
    });
    const { bundledLlamaCommit } = await import("@leanvision/llama-adapter/llama-source");
    anchor.commit = bundledLlamaCommit();
  }

  if (bench.model.binaries) console.log(`binaries: ${describeBinaries(bench.model.binaries)}`);
  console.log(formatTable(bench, anchor));
  const written = writeBenchOutputs(options.json, bench, { anchor, image, runs: options.runs, threads: rt.description.threads });
  console.log(`\nwrote ${written.json}\n      ${written.markdown}\n      ${written.svg}`);
}

main(process.argv.slice(2)).catch((error) => {
  if (error instanceof LeanVisionError) {
    console.error(`error [${error.code}]: ${error.message}`);
    process.exit(2);
  }
  console.error(error);
  process.exit(1);
});
