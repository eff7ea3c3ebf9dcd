// Lets a plain `node` child process run the workspace's TypeScript sources the way vitest runs the
// tests: `node --import <this file> script.ts`. .ts files are transpiled with TypeScript (no type
// check), `./x.js` imports from a .ts file resolve to `./x.ts`, and the @leanvision/* packages resolve
// to their sources (vitest.config.ts's aliases), so no build is needed first.
import { register } from "node:module";

register("./ts-hooks.mjs", import.meta.url);
