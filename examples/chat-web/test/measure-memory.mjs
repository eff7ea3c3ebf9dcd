#!/usr/bin/env node
// RSS of the chat server over N conversations of one image turn each, in a fresh process per mode:
//   bounded   — at most 3 live, every other conversation ended with "New chat", the rest evicted;
//   unbounded — nothing ever freed (what the server did before the limits).
// node examples/chat-web/test/measure-memory.mjs [--profile tiny] [--conversations 30] [--modes bounded,unbounded]
// MEM_DETAIL=1 adds [rss, heapUsed, external, arrayBuffers] MB after each conversation (with gc) on stderr.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    profile: { type: "string", default: "tiny" },
    conversations: { type: "string", default: "30" },
    child: { type: "string" }, // the mode, in the child process
    modes: { type: "string", default: "bounded,unbounded" }
  }
});
const n = Number(values.conversations);

if (values.child) {
  const { startChatServer, BUDGETS } = await import("../server.js");
  const { sampleImagePath } = await import("@leanvision/testkit");
  const bounded = values.child === "bounded";
  const app = await startChatServer({ runtime: "llama", profile: values.profile, threads: 1, maxTokens: 2, maxConversations: bounded ? 3 : 1_000_000, log: { error() {} } });
  const image = readFileSync(sampleImagePath()).toString("base64");
  const post = (path, body) => fetch(new URL(path, app.url), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.text());
  const rss = [process.memoryUsage().rss / 2 ** 20];
  const mem = () => { globalThis.gc?.(); const m = process.memoryUsage(); return [m.rss, m.heapUsed, m.external, m.arrayBuffers].map((x) => Math.round(x / 2 ** 20)); };
  const detail = [mem()];
  for (let i = 0; i < n; i++) {
    const events = await post("/api/chat", { conversation: `m${i}`, text: "What is this?", image, leanVision: true, budget: BUDGETS[0].value });
    if (!events.includes("event: turn")) throw new Error(events);
    if (bounded && i % 2 === 0) await post("/api/end-chat", { conversation: `m${i}` });
    rss.push(process.memoryUsage().rss / 2 ** 20);
    if (process.env.MEM_DETAIL) detail.push(mem());
  }
  if (process.env.MEM_DETAIL) console.error(JSON.stringify(detail));
  const stats = app.stats();
  await app.close();
  console.log(JSON.stringify({ rss, stats, peak: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

console.log(`${values.profile}, ${n} conversations, one image turn each`);
for (const mode of values.modes.split(",")) {
  const out = execFileSync(process.execPath, [...(process.env.MEM_DETAIL ? ["--expose-gc"] : []), fileURLToPath(import.meta.url), "--child", mode, "--profile", values.profile, "--conversations", String(n)], { encoding: "utf8" });
  const { rss, stats, peak } = JSON.parse(out.trim().split("\n").pop());
  const at = (k) => rss[Math.min(k, rss.length - 1)].toFixed(0);
  console.log(
    `${mode.padEnd(9)} RSS MB: loaded ${at(0)}, after 1 ${at(1)}, 5 ${at(5)}, 10 ${at(10)}, 20 ${at(20)}, ${n} ${at(n)}; peak ${peak.toFixed(0)}; ` +
      `live ${stats.liveConversations}, ended ${stats.ended}, evicted ${stats.evicted}`
  );
}
