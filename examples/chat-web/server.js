#!/usr/bin/env node
// Local chat web app: node examples/chat-web/server.js [--port 8080] [--profile small | --model … --mmproj …]
// One page (public/), one streaming endpoint. The model is loaded once; turns run one at a time.
//
// It is meant for one person on this machine, and guards against everything else:
// - only local Host names (DNS rebinding) and only its own page as Origin (CSRF) are answered;
//   anything else is refused with 403 before any work (--allow-host adds names);
// - request bodies are validated, limited in size and in time;
// - conversations are bounded: freed on "New chat", after being idle, and least recently used
//   first when there are too many (each holds a context: about 340 MB on the `small` profile);
// - a turn whose client went away is cancelled (or skipped, if it was still waiting);
// - unexpected errors are logged here and answered with a generic message.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { join, extname } from "node:path";
import { LeanVisionError, parseReducerSpec, formatReducerSpec, tileKeepMasks } from "@leanvision/core";
import { parseCli, parseRuntime, parseModelSource, positiveInt, invalid } from "../lib/args.js";
import { presetsFor } from "@leanvision/core/presets";
import { openRuntime } from "../lib/runtime.js";
import { progressBar } from "../lib/progress.js";

const PUBLIC_DIR = fileURLToPath(new URL("./public/", import.meta.url));
const STATIC_FILES = { "/": "index.html", "/app.js": "app.js", "/style.css": "style.css" };
const CONTENT_TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // The page loads only its own script and style; images are drawn from the picked file (blob:).
  "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-frame-options": "DENY"
};

/** Defaults; each is an option of startChatServer, a command-line flag and an environment variable. */
export const DEFAULTS = {
  /** Live conversations at most; the least recently used is freed to make room. Each holds a context (~340 MB on `small`). */
  maxConversations: 4,
  /** A conversation nobody has used for this long is freed. */
  idleMinutes: 15,
  /** The whole request body must arrive within this time. */
  bodyTimeoutSeconds: 15,
  /** Largest request body (the image travels base64-encoded inside it). */
  maxBodyBytes: 32 * 1024 * 1024,
  /** Longest question, in characters. */
  maxTextChars: 10_000
};

const ENV = {
  maxConversations: "LEANVISION_CHAT_MAX_CONVERSATIONS",
  idleMinutes: "LEANVISION_CHAT_IDLE_MINUTES",
  allowHost: "LEANVISION_CHAT_ALLOW_HOST"
};

/** The budgets the page offers when LeanVision is on, for the model's encoder tile (the first is the default). */
export function budgetsFor(tile) {
  return presetsFor(tile).filter((p) => p.spec !== "none").map(({ label, spec }) => ({ label, value: spec }));
}

const CONVERSATION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** An error answered with an HTTP status before the event stream opens. */
class HttpError extends LeanVisionError {
  constructor(status, code, message, { closeConnection = false, cause } = {}) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.closeConnection = closeConnection;
  }
}

/**
 * Starts the server. source: { runtime, profile | modelPath (+ mmprojPath), threads?, onProgress? }.
 * Limits (see DEFAULTS): maxConversations, idleMs, bodyTimeoutMs, maxBodyBytes, maxTextChars;
 * allowedHosts: extra Host names to answer besides localhost/loopback and the bound address.
 * Returns { url, stats(), close() }.
 */
export async function startChatServer({
  port = 0,
  host = "127.0.0.1",
  maxTokens = 32,
  maxConversations = DEFAULTS.maxConversations,
  idleMs = DEFAULTS.idleMinutes * 60_000,
  bodyTimeoutMs = DEFAULTS.bodyTimeoutSeconds * 1000,
  maxBodyBytes = DEFAULTS.maxBodyBytes,
  maxTextChars = DEFAULTS.maxTextChars,
  allowedHosts = [],
  log = console,
  ...source
}) {
  for (const [name, value] of Object.entries({ maxConversations, idleMs, bodyTimeoutMs, maxBodyBytes, maxTextChars })) {
    if (!Number.isInteger(value) || value < 1) throw new LeanVisionError("INVALID_OPTIONS", `${name} must be a positive whole number, got ${value}`);
  }
  const hostnames = allowedHostnames(host, allowedHosts);
  const rt = await openRuntime(source);
  const budgets = budgetsFor(rt.tile);
  /** id → { chat, reducerName, imageBytes, overlay, lastUsed }; Map order = least recently used first. */
  const conversations = new Map();
  const inFlight = new Set(); // AbortControllers of open turns, aborted on close()
  // turns: received; completed / cancelled (client went away; skipped = before it started) / failed;
  // refused: 403s; conversations freed because: ended ("New chat"), expired (idle), evicted (LRU), restarted (new image or reducer).
  const counts = { turns: 0, completed: 0, cancelled: 0, skipped: 0, failed: 0, refused: 0, ended: 0, expired: 0, evicted: 0, restarted: 0 };
  let queue = Promise.resolve(); // one model, so one turn (or conversation change) at a time
  let closing = false;

  /** Runs fn after everything queued before it; the queue survives fn's failure. */
  function serial(fn) {
    const run = queue.then(fn);
    queue = run.catch(() => {});
    return run;
  }

  const server = createServer({
    // Slow or incomplete requests must not hold connections: headers and body both have a deadline
    // (readBody enforces the body's precisely; these are Node's own backstops, checked every second).
    headersTimeout: bodyTimeoutMs,
    requestTimeout: bodyTimeoutMs * 2,
    connectionsCheckingInterval: 1000
  });
  server.on("request", (req, res) => {
    handle(req, res).catch((error) => sendError(res, error, log));
  });

  async function handle(req, res) {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    checkHostAndOrigin(req, hostnames, server.address().port, counts);
    const url = new URL(req.url, "http://localhost");
    if (STATIC_FILES[url.pathname] || url.pathname === "/api/budgets") {
      if (req.method !== "GET" && req.method !== "HEAD") throw methodNotAllowed("GET");
      if (url.pathname === "/api/budgets") return sendJson(res, 200, budgets);
      const file = STATIC_FILES[url.pathname];
      res.writeHead(200, { "content-type": CONTENT_TYPES[extname(file)], "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : await readFile(join(PUBLIC_DIR, file)));
      return;
    }
    if (url.pathname === "/api/chat") {
      if (req.method !== "POST") throw methodNotAllowed("POST");
      const body = parseChatRequest(await readJson(req, { maxBodyBytes, bodyTimeoutMs }), maxTextChars, budgets);
      return streamTurn(req, res, body);
    }
    if (url.pathname === "/api/end-chat") {
      if (req.method !== "POST") throw methodNotAllowed("POST");
      const { conversation } = parseEndRequest(await readJson(req, { maxBodyBytes: 4096, bodyTimeoutMs }));
      await serial(() => free(conversation, "ended"));
      res.writeHead(204).end();
      return;
    }
    throw new HttpError(404, "NOT_FOUND", "not found");
  }

  async function streamTurn(req, res, body) {
    const events = openEventStream(res);
    const abort = new AbortController();
    inFlight.add(abort);
    // The client went away (tab closed, fetch aborted) before the answer was complete: cancel its turn.
    res.on("close", () => {
      if (!res.writableFinished) abort.abort();
    });
    counts.turns++;
    try {
      await serial(() => runTurn(body, events, abort.signal));
      counts.completed++;
    } catch (error) {
      if (abort.signal.aborted) counts.cancelled++;
      else counts.failed++;
      events.send("error", errorPayload(error, log, abort.signal));
    } finally {
      inFlight.delete(abort);
      events.end();
    }
  }

  /** One chat turn: (re)starts the conversation when the image or reducer changed, then streams the answer. */
  async function runTurn({ conversation: id, text, image, reducer }, events, signal) {
    // Waited in the queue for a client that has gone: do nothing at all.
    if (signal.aborted) {
      counts.skipped++;
      throw abortError();
    }
    const reducerName = formatReducerSpec(reducer);
    let conv = conversations.get(id);
    const imageBytes = image ?? conv?.imageBytes;
    if (!imageBytes) {
      throw new LeanVisionError(
        "NO_CONVERSATION",
        "this chat is not open on the server (it was idle too long, or closed to make room for newer chats); send the image again to start over"
      );
    }

    // A different reducer or image means different visual tokens: start a fresh context with the image.
    const restart = !conv || image !== null || conv.reducerName !== reducerName;
    if (restart) {
      if (conv) await free(id, "restarted");
      await makeRoom();
      if (signal.aborted) throw abortError();
      conv = { chat: await rt.createChat({ reducer }), reducerName, imageBytes, overlay: null, lastUsed: Date.now() };
      conversations.set(id, conv);
    }
    touch(id, conv);

    try {
      await conv.chat.prompt(text, {
        images: restart ? [imageBytes] : [],
        maxTokens,
        temperature: 0,
        signal,
        onTextChunk: (chunk) => events.send("chunk", { text: chunk })
      });
    } catch (error) {
      // A turn that failed before the image reached the context leaves a chat without it: start over next time.
      if (restart && !conv.chat.lastTurn) await free(id, "failed");
      else touch(id, conv);
      throw error;
    }
    touch(id, conv);
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

  function touch(id, conv) {
    conv.lastUsed = Date.now();
    conversations.delete(id); // re-inserted last: Map order is least recently used first
    conversations.set(id, conv);
  }

  /** Frees one conversation's context. Runs inside serial(), so never under a running turn. */
  async function free(id, reason) {
    const conv = conversations.get(id);
    if (!conv) return false;
    conversations.delete(id);
    if (reason !== "failed") counts[reason]++;
    try {
      await conv.chat.dispose();
    } catch (error) {
      log.error(`chat-web: disposing conversation failed: ${error?.stack ?? error}`);
    }
    return true;
  }

  /** Frees least recently used conversations until a new one fits. */
  async function makeRoom() {
    while (conversations.size >= maxConversations) await free(conversations.keys().next().value, "evicted");
  }

  // Idle expiry: checked a few times per idle period (at least every minute), freed through the queue.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, conv] of conversations) {
      if (now - conv.lastUsed >= idleMs && !conv.expiring) {
        conv.expiring = true;
        serial(() => {
          conv.expiring = false;
          // Used again while this waited in the queue? Then it stays.
          return conversations.get(id) === conv && Date.now() - conv.lastUsed >= idleMs ? free(id, "expired") : false;
        });
      }
    }
  }, Math.max(50, Math.min(60_000, Math.floor(idleMs / 4))));
  sweep.unref();

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const address = server.address();
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host === "0.0.0.0" || host === "::" ? "localhost" : urlHost}:${address.port}/`,
    /** The budgets the page offers for this model (budgetsFor its encoder tile). */
    budgets,
    /** Counters and the live conversation count, for tests and monitoring. */
    stats() {
      return { ...counts, liveConversations: conversations.size, maxConversations };
    },
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(sweep);
      for (const abort of inFlight) abort.abort();
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
      await closed;
      await serial(async () => {
        for (const id of [...conversations.keys()]) await free(id, "ended");
      });
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

// ---- Host and Origin ----

const LOOPBACK = [/^localhost$/, /\.localhost$/, /^127(\.\d{1,3}){3}$/, /^\[::1\]$/];

/** Local names always; the bound address when it is a specific one; plus the allowed extras. */
function allowedHostnames(host, extra) {
  const names = new Set(extra.map((name) => normaliseHostname(name)).filter(Boolean));
  if (host && host !== "0.0.0.0" && host !== "::") names.add(normaliseHostname(host));
  return (hostname) => names.has(hostname) || LOOPBACK.some((re) => re.test(hostname));
}

function normaliseHostname(name) {
  const text = String(name).trim().toLowerCase();
  if (!text) return "";
  if (text.includes(":") && !text.startsWith("[")) return `[${text}]`; // a bare IPv6 address
  return text;
}

/**
 * DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example.
 * CSRF: a page elsewhere posting here sends its own Origin (and Sec-Fetch-Site: cross-site).
 * Both are refused before the body is read.
 */
function checkHostAndOrigin(req, isAllowed, port, counts) {
  const refuse = (message) => {
    counts.refused++;
    return new HttpError(403, "FORBIDDEN", message, { closeConnection: true });
  };
  const hostname = parseHostname(req.headers.host);
  if (!hostname || !isAllowed(hostname)) {
    throw refuse(
      `this server answers only local addresses such as localhost, not Host "${String(req.headers.host ?? "")}"; ` +
        "to allow another name, start it with --allow-host NAME"
    );
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let ok = false;
    try {
      const url = new URL(origin);
      ok = url.protocol === "http:" && isAllowed(url.hostname.toLowerCase()) && Number(url.port || 80) === port;
    } catch {
      ok = false; // "null" (sandboxed frames, file: pages) and anything unparsable
    }
    if (!ok) throw refuse(`requests from other sites are refused (Origin ${origin}); open the chat page itself`);
  }
  const site = req.headers["sec-fetch-site"];
  if (req.method !== "GET" && req.method !== "HEAD" && site !== undefined && site !== "same-origin" && site !== "none") {
    throw refuse(`requests from other sites are refused (Sec-Fetch-Site: ${site}); open the chat page itself`);
  }
}

function parseHostname(hostHeader) {
  if (typeof hostHeader !== "string" || !hostHeader) return null;
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

// ---- Request bodies ----

/** Reads a JSON body: application/json only, at most maxBodyBytes, complete within bodyTimeoutMs. */
async function readJson(req, { maxBodyBytes, bodyTimeoutMs }) {
  const type = String(req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(415, "INVALID_INPUT", "send the request body as JSON with content-type: application/json", { closeConnection: true });
  }
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBodyBytes) throw bodyTooLarge(maxBodyBytes);
  const bytes = await readBody(req, { maxBodyBytes, bodyTimeoutMs });
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new HttpError(400, "INVALID_INPUT", "the request body is not JSON");
  }
}

function readBody(req, { maxBodyBytes, bodyTimeoutMs }) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const fail = (error) => {
      clearTimeout(timer);
      req.removeAllListeners("data");
      req.pause();
      reject(error);
    };
    const timer = setTimeout(() => {
      fail(new HttpError(408, "TIMEOUT", `the request body did not arrive within ${Math.round(bodyTimeoutMs / 100) / 10} s`, { closeConnection: true }));
    }, bodyTimeoutMs);
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > maxBodyBytes) fail(bodyTooLarge(maxBodyBytes));
      else chunks.push(chunk);
    });
    req.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    req.on("error", (error) => fail(new HttpError(400, "INVALID_INPUT", "the request body was cut off", { closeConnection: true, cause: error })));
    req.on("aborted", () => fail(new HttpError(400, "INVALID_INPUT", "the request body was cut off", { closeConnection: true })));
  });
}

function bodyTooLarge(maxBodyBytes) {
  const limit = maxBodyBytes >= 2 ** 20 ? `${(maxBodyBytes / 2 ** 20).toFixed(0)} MiB` : `${maxBodyBytes} bytes`;
  return new HttpError(413, "INVALID_INPUT", `the request is over ${limit}; use a smaller image`, { closeConnection: true });
}

/** { conversation, text, image?, leanVision?, budget? } → { conversation, text, image: Buffer|null, reducer }. */
function parseChatRequest(body, maxTextChars, budgets) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) bad("the request body must be a JSON object");
  const { conversation, text, image, leanVision = true, budget } = body;
  checkConversation(conversation);
  if (typeof text !== "string" || !text.trim()) bad("type a question first");
  if (text.length > maxTextChars) bad(`the question is over ${maxTextChars} characters; ask a shorter one`);
  let imageBytes = null;
  if (image !== undefined && image !== null && image !== "") {
    if (typeof image !== "string" || image.length % 4 !== 0 || !BASE64.test(image)) bad("image must be the picture's bytes in base64");
    imageBytes = Buffer.from(image, "base64");
  }
  if (typeof leanVision !== "boolean") bad("leanVision must be true or false");
  let reducer = { kind: "none" };
  if (leanVision) {
    const value = budget ?? budgets[0].value;
    if (!budgets.some((b) => b.value === value)) bad(`budget must be one of ${budgets.map((b) => b.value).join(", ")}`);
    reducer = parseReducerSpec(value);
  }
  return { conversation, text, image: imageBytes, reducer };
}

function parseEndRequest(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) bad("the request body must be a JSON object");
  checkConversation(body.conversation);
  return { conversation: body.conversation };
}

function checkConversation(id) {
  if (typeof id !== "string" || !CONVERSATION_ID.test(id)) bad("the request needs a conversation id (1-64 letters, digits, - or _)");
}

function bad(message) {
  throw new HttpError(400, "INVALID_INPUT", message);
}

function methodNotAllowed(allow) {
  const error = new HttpError(405, "METHOD_NOT_ALLOWED", `use ${allow}`);
  error.allow = allow;
  return error;
}

// ---- Responses ----

function openEventStream(res) {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" });
  return {
    send(event, data) {
      if (!res.writableEnded && !res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (!res.writableEnded) res.end();
    }
  };
}

function abortError() {
  return new LeanVisionError("ABORTED", "the turn was cancelled: the client went away");
}

/** Typed errors keep their code and message; anything else is logged here and answered generically. */
export function errorPayload(error, log = console, signal) {
  if (signal?.aborted || error?.name === "AbortError" || error?.code === "ABORTED") return { code: "ABORTED", message: "the turn was cancelled" };
  if (error instanceof LeanVisionError) return { code: error.code, message: error.message };
  log.error(`chat-web: unexpected error: ${error?.stack ?? error}`);
  return { code: "INTERNAL", message: "something went wrong on the server; its log has the details" };
}

function sendError(res, error, log) {
  if (res.headersSent) {
    if (!(error instanceof LeanVisionError)) log.error(`chat-web: unexpected error: ${error?.stack ?? error}`);
    if (!res.writableEnded) res.end();
    return;
  }
  const status = error instanceof HttpError ? error.status : error instanceof LeanVisionError ? 400 : 500;
  const headers = {};
  if (error?.allow) headers.allow = error.allow;
  // The body was not (all) read: close the connection rather than parse the rest as a next request.
  if (error?.closeConnection) headers.connection = "close";
  sendJson(res, status, errorPayload(error, log), headers);
}

function sendJson(res, status, payload, headers = {}) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers });
  res.end(JSON.stringify(payload));
}

// ---- Command line ----

const USAGE = `Usage: node examples/chat-web/server.js [--port 8080] [--host 127.0.0.1] [--runtime llama|transformers]
       [--profile small | --model <gguf> --mmproj <gguf>] [--max-tokens 32] [--threads N]
       [--max-conversations ${DEFAULTS.maxConversations}] [--idle-minutes ${DEFAULTS.idleMinutes}] [--allow-host name,…]
Environment: ${ENV.maxConversations}, ${ENV.idleMinutes}, ${ENV.allowHost} (flags win).
Only local Host names and the page's own Origin are answered; --allow-host adds Host names
(e.g. when you expose it with --host 0.0.0.0 and open it as http://mybox:8080).`;

async function main(argv) {
  const { values } = parseCli(
    argv,
    {
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
      runtime: { type: "string", default: "llama" },
      profile: { type: "string" },
      model: { type: "string" },
      mmproj: { type: "string" },
      threads: { type: "string" },
      "max-tokens": { type: "string", default: "32" },
      "max-conversations": { type: "string", default: process.env[ENV.maxConversations] ?? String(DEFAULTS.maxConversations) },
      "idle-minutes": { type: "string", default: process.env[ENV.idleMinutes] ?? String(DEFAULTS.idleMinutes) },
      "allow-host": { type: "string", default: process.env[ENV.allowHost] ?? "" },
      help: { type: "boolean", default: false }
    },
    USAGE
  );
  if (values.help) return console.log(USAGE);
  const runtime = parseRuntime(values.runtime);
  const source = parseModelSource(values, runtime, { llama: "small", transformers: "tiny" });
  const idleMinutes = Number(values["idle-minutes"]);
  if (!(idleMinutes > 0) || !Number.isFinite(idleMinutes)) invalid(`--idle-minutes must be a positive number, got "${values["idle-minutes"]}"`);
  if (source.profile) console.log(`Synthetic "${source.profile}" model: real timings, answers are noise. Use --model/--mmproj for real files.`);
  const app = await startChatServer({
    ...source,
    runtime,
    ...(values.threads ? { threads: positiveInt(values.threads, "--threads") } : {}),
    host: values.host,
    port: positiveInt(values.port, "--port"),
    maxTokens: positiveInt(values["max-tokens"], "--max-tokens"),
    maxConversations: positiveInt(values["max-conversations"], "--max-conversations"),
    idleMs: Math.max(1, Math.round(idleMinutes * 60_000)),
    allowedHosts: values["allow-host"].split(",").map((s) => s.trim()).filter(Boolean),
    onProgress: progressBar(`writing the "${source.profile}" model (first run only)`)
  });
  console.log(`LeanVision chat: ${app.url} (at most ${app.stats().maxConversations} open conversations, freed after ${idleMinutes} idle minutes)`);
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
