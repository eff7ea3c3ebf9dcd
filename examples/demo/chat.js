#!/usr/bin/env node
// pnpm demo [-- --model llm.gguf --mmproj mmproj.gguf --image photo.jpg --reducer visionzip:54+10]
import { LeanVisionError } from "@leanvision/core";
import { runDemo } from "./demo.js";

runDemo(process.argv.slice(2), {
  input: process.stdin,
  output: process.stdout,
  errorOutput: process.stderr,
  interactive: Boolean(process.stdin.isTTY && process.stdout.isTTY)
}).catch((error) => {
  if (error instanceof LeanVisionError) {
    console.error(`error [${error.code}]: ${error.message}`);
    process.exit(2);
  }
  console.error(error);
  process.exit(1);
});
