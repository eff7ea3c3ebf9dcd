#!/usr/bin/env node
// Local chat web app: node examples/chat-web/server.js [--port 8080] [--profile small | --model … --mmproj …]
// One page (public/), one streaming endpoint. The model is loaded once; turns run one at a time.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { join, extname } from "node:path";
import { LeanVisionError, parseReducerSpec, formatReducerSpec, tileKeepMasks } from "@leanvision/core";
import { parseCli, parseRuntime, parseModelSource, positiveInt } from "../lib/args.js";
import { openRuntime } from "../lib/runtime.js";
import { progressBar } from "../lib/progress.js";

const PUBLIC_DIR = fileURLToPath(new URL("./public/", import.meta.url));
const STATIC_FILES = { "/": "index.html", "/app.js": "app.js", "/style.css": "style.css" };
const CONTENT_TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The budgets the page offers when LeanVision is on (the first is the default). */
export const BUDGETS = [
  { label: "VisionZip 64 (54+10)", spec: { kind: "visionzip", dominant: 54, contextual: 10 } },
  { label: "VisionZip 128 (108+20)", spec: { kind: "visionzip", dominant: 108, contextual: 20 } },
  { label: "VisionZip 192 (162+30)", spec: { kind: "visionzip", dominant: 162, contextual: 30 } },
  { label: "VisionZip adaptive (90% of attention)", spec: { kind: "visionzip-adaptive", coverage: 0.9, min: 32, max: 160, contextual: 10 } },
  { label: "2×2 pooling (144)", spec: { kind: "pool", stride: 2 } },
  { label: "region packing 2× (144)", spec: { kind: "regionpack", scale: 2 } }
].map(({ label, spec }) => ({ label, value: formatReducerSpec(spec) }));

/**
 * Starts the server. source: { runtime, profile | modelPath (+ mmprojPath), onProgress? };
 * Returns { url, close() }.
 */
export async function startChatServer({ port = 0, host = "127.0.0.1", maxTokens = 32, ...source }) {
  const rt = await openRuntime(source);
  const conversations = new Map();
  let queue = Promise.resolve(); // one model, so one turn at a time

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => sendError(res, error));
  });

  async function handle(req, res) {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "GET" && STATIC_FILES[url.pathname]) {
      const file = STATIC_FILES[url.pathname];
      res.writeHead(200, { "content-type": CONTENT_TYPES[extname(file)], "cache-control": "no-store" });
      res.end(await readFile(join(PUBLIC_DIR, file)));
      return;
    }
    if (req.method === "GET" && url.pathname === "/api/budgets") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(BUDGETS));
      return;
    }
    if (req.method === "POST" && url.pathname === "/api/chat") {
      const body = JSON.parse((await readBody(req)).toString("utf8"));
      const events = openEventStream(res);
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      const turn = queue.then(() => runTurn(body, events, abort.signal));
      queue = turn.catch(() => {});
      await turn.catch((error) => events.send("error", errorPayload(error)));
      events.end();
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  }

  /** One chat turn: (re)starts the conversation when the image or reducer changed, then streams the answer. */
  async function runTurn({ conversation: id, text, image, leanVision, budget }, events, signal) {
    if (typeof id !== "string" || !id) throw new LeanVisionError("INVALID_INPUT", "the request needs a conversation id");
    if (typeof text !== "string" || !text.trim()) throw new LeanVisionError("INVALID_INPUT", "type a question first");
    const reducer = leanVision ? parseReducerSpec(String(budget)) : { kind: "none" };
    const reducerName = formatReducerSpec(reducer);

    let conv = conversations.get(id);
    const newImage = typeof image === "string" && image.length > 0 ? Buffer.from(image, "base64") : null;
    const imageBytes = newImage ?? conv?.imageBytes;
    if (!imageBytes) throw new LeanVisionError("INVALID_INPUT", "pick or drop an image first");

    // A different reducer or image means different visual tokens: start a fresh context with the image.
    const restart = !conv || newImage !== null || conv.reducerName !== reducerName;
    if (restart) {
      await conv?.chat.dispose();
      conv = { chat: await rt.createChat({ reducer }), reducerName, imageBytes, overlay: null };
      conversations.set(id, conv);
    }

    await conv.chat.prompt(text, {
      images: restart ? [imageBytes] : [],
      maxTokens,
      temperature: 0,
      signal,
      onTextChunk: (chunk) => events.send("chunk", { text: chunk })
    });
    const last = conv.chat.lastTurn;
    // Later turns reuse the image from the cache; the overlay stays the one of the turn that sent it.
    if (last.images?.length) conv.overlay = { ...overlayOf(last.images[0]), reducer: reducerName, visualTokens: last.visualTokens };
    events.send("turn", {
      restarted: restart,
      turn: last.turn,
      reducer: reducerName,
      visualTokens: last.visualTokens,
      evaluatedTokens: last.evaluatedTokens,
      reusedTokens: last.reusedTokens,
      encodeMs: last.encodeMs,
      reduceMs: last.reduceMs,
      projectMs: last.projectMs,
      prefillMs: last.prefillMs,
      ttftMs: last.ttftMs,
      overlay: conv.overlay
    });
  }

  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    url: `http://${host}:${address.port}/`,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await queue;
      for (const conv of conversations.values()) await conv.chat.dispose();
      await rt.dispose();
    }
  };
}

/**
 * Each tile's patch grid as core's keepMask sees it: 0 = merged or dropped, 1 = kept, 2 = contextual
 * target. rows/cols/mask are the overview tile's (the whole image).
 */
export function overlayOf({ tiles, tileGrid, provenance }) {
  const masks = tileKeepMasks(provenance, tiles).map((mask, i) => ({ rows: tiles[i].grid.rows, cols: tiles[i].grid.cols, mask: Array.from(mask) }));
  return { ...masks[0], tileGrid, tiles: masks };
}

function openEventStream(res) {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" });
  return {
    send(event, data) {
      if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (!res.writableEnded) res.end();
    }
  };
}

function errorPayload(error) {
  if (error instanceof LeanVisionError) return { code: error.code, message: error.message };
  if (error?.name === "AbortError") return { code: "ABORTED", message: "the turn was cancelled" };
  console.error(error);
  return { code: "INTERNAL", message: String(error?.message ?? error) };
}

function sendError(res, error) {
  if (res.headersSent) return res.end();
  const status = error instanceof SyntaxError || error instanceof LeanVisionError ? 400 : 500;
  const payload = error instanceof SyntaxError ? { code: "INVALID_INPUT", message: "the request body is not JSON" } : errorPayload(error);
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(payload));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new LeanVisionError("INVALID_INPUT", `the image is over ${MAX_BODY_BYTES >> 20} MiB; use a smaller one`));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const USAGE = `Usage: node examples/chat-web/server.js [--port 8080] [--runtime llama|transformers]
       [--profile small | --model <gguf> --mmproj <gguf>] [--max-tokens 32]`;

async function main(argv) {
  const { values } = parseCli(
    argv,
    {
      port: { type: "string", default: "8080" },
      runtime: { type: "string", default: "llama" },
      profile: { type: "string" },
      model: { type: "string" },
      mmproj: { type: "string" },
      "max-tokens": { type: "string", default: "32" },
      help: { type: "boolean", default: false }
    },
    USAGE
  );
  if (values.help) return console.log(USAGE);
  const runtime = parseRuntime(values.runtime);
  const source = parseModelSource(values, runtime, { llama: "small", transformers: "tiny" });
  if (source.profile) console.log(`Synthetic "${source.profile}" model: real timings, answers are noise. Use --model/--mmproj for real files.`);
  const app = await startChatServer({
    ...source,
    runtime,
    port: positiveInt(values.port, "--port"),
    maxTokens: positiveInt(values["max-tokens"], "--max-tokens"),
    onProgress: progressBar(`writing the "${source.profile}" model (first run only)`)
  });
  console.log(`LeanVision chat: ${app.url}`);
  const stop = () => app.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error instanceof LeanVisionError ? `error [${error.code}]: ${error.message}` : error);
    process.exit(error instanceof LeanVisionError ? 2 : 1);
  });
}
