// End to end: the chat page in Debian's chromium against the local server and the tiny model.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { sampleImagePath } from "@leanvision/testkit";
import { startChatServer } from "../server.js";
import { ensureChromium, CHROMIUM_ARGS } from "./chromium.js";

const ARTIFACTS = fileURLToPath(new URL("../../../test-artifacts/", import.meta.url));
const SCREENSHOT = join(ARTIFACTS, "chat-web.png");

let app: Awaited<ReturnType<typeof startChatServer>>;
let browser: BrowserContext;
let page: Page;
let userDataDir: string;

beforeAll(async () => {
  const executablePath = ensureChromium();
  // One thread: the tiny model gains nothing from more, and the machine may be shared.
  app = await startChatServer({ runtime: "llama", profile: "tiny", maxTokens: 6, threads: 1 });
  userDataDir = mkdtempSync(join(tmpdir(), "lv-chromium-"));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 900 }
  });
  page = browser.pages()[0] ?? (await browser.newPage());
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

async function ask(question: string, expectedRows: number) {
  await page.getByTestId("question").fill(question);
  await page.getByTestId("send").click();
  await page.locator("#timings tbody tr").nth(expectedRows - 1).waitFor({ timeout: 120_000 });
  await expect.poll(() => page.getByTestId("send").isDisabled()).toBe(false);
}

/**
 * Reads a 24x24 grid drawn in the square (x0, y0, size) of a canvas cell by cell and counts the cells
 * whose left edge carries a blue or an orange outline.
 */
function drawnCells(testId = "overlay", square?: { x0: number; y0: number; size: number }) {
  return page.getByTestId(testId).evaluate((canvas: HTMLCanvasElement, sq) => {
    const { data, width } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
    const { x0, y0, size } = sq ?? { x0: 0, y0: 0, size: width };
    const cell = size / 24;
    const near = (i: number, rgb: number[]) => rgb.every((v, k) => Math.abs(data[i + k] - v) < 4);
    let blue = 0, orange = 0;
    for (let r = 0; r < 24; r++) {
      for (let c = 0; c < 24; c++) {
        const i = (Math.floor(y0 + r * cell + cell / 2) * width + Math.floor(x0 + c * cell + 1)) * 4;
        if (near(i, [40, 100, 230])) blue++;
        if (near(i, [240, 140, 20])) orange++;
      }
    }
    return { blue, orange };
  }, square);
}

async function timingRow(n: number) {
  const cells = await page.locator("#timings tbody tr").nth(n).locator("td").allTextContents();
  const [turn, reducer, visual, evaluated, reused, encode, reduce, project, prefill, ttft] = cells;
  return { turn: Number(turn), reducer, visual: Number(visual), evaluated: Number(evaluated), reused: Number(reused),
    encode: Number(encode), reduce: Number(reduce), project: Number(project), prefill: Number(prefill), ttft: Number(ttft) };
}

describe("chat web app", () => {
  it("chats over two turns about an uploaded image, with timings and the kept tokens drawn", async () => {
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    // Console errors include Content-Security-Policy violations: the page must live within its policy.
    page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));
    await page.goto(app.url);
    await page.getByTestId("file").setInputFiles(sampleImagePath());
    await expect.poll(() => page.getByTestId("messages").textContent()).toContain("sent with the next question");

    await ask("What is in this picture?", 1);
    await ask("Which colours stand out?", 2);

    const first = await timingRow(0);
    const second = await timingRow(1);
    // tiny: 576 patches + CLS; VisionZip 54+10 keeps 64 tokens.
    expect(first).toMatchObject({ turn: 1, visual: 64, reused: 0 });
    expect(first.reducer).toMatch(/^visionzip/);
    expect(first.evaluated).toBeGreaterThan(64);
    for (const value of [first.encode, first.prefill, first.ttft]) expect(value).toBeGreaterThan(0);
    // Turn 2 reuses the image (and turn 1) from the KV cache and evaluates only the new text.
    expect(second.turn).toBe(2);
    expect(second.reused).toBeGreaterThanOrEqual(first.evaluated);
    expect(second.evaluated).toBeLessThan(first.evaluated);

    // The overlay (core's keepMask): 53 dominant patches kept (CLS is the 54th token), 10 contextual
    // targets, the other 513 merged into those…
    const view = page.getByTestId("overlay");
    expect(await view.getAttribute("data-kept")).toBe("53");
    expect(await view.getAttribute("data-contextual")).toBe("10");
    expect(await view.getAttribute("data-merged-or-dropped")).toBe(String(576 - 63));
    const info = await page.getByTestId("overlay-info").textContent();
    expect(info).toContain(`${first.reducer}: 64 visual tokens from a 24×24 patch grid`);
    expect(info).toContain("53 patches kept, 10 contextual, 513 merged or dropped");
    expect(await page.getByTestId("messages").textContent()).not.toContain("Started over");
    // …and drawn: blue outlines on the kept cells, orange on the contextual ones.
    expect(await drawnCells()).toEqual({ blue: 53, orange: 10 });
    expect(await page.locator("#messages li.assistant").count()).toBe(2);
    expect(await page.locator("#messages li.error").count()).toBe(0);
    expect(pageErrors).toEqual([]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  });

  it("turning LeanVision off starts over with stock llama.cpp's 576 image tokens", async () => {
    await page.getByTestId("lean").uncheck();
    await ask("And now without LeanVision?", 3);
    const third = await timingRow(2);
    expect(third).toMatchObject({ turn: 1, reducer: "none", visual: 576, reused: 0 });
    expect(await page.getByTestId("messages").textContent()).toContain("Started over with none");
    // Stock llama.cpp's llava graph appends CLS after the patches, then feeds the projector rows
    // 1..576 (clip.cpp's patch_offset): patch 0 is left out and CLS goes in. The overlay shows that.
    const view = page.getByTestId("overlay");
    expect(await view.getAttribute("data-kept")).toBe("575");
    expect(await view.getAttribute("data-merged-or-dropped")).toBe("1");
    expect(await drawnCells()).toEqual({ blue: 575, orange: 0 });
  });

  it("answers bad requests with a typed error instead of crashing", async () => {
    const post = (body: unknown) =>
      fetch(new URL("/api/chat", app.url), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

    const noImage = await post({ conversation: "fresh", text: "hello", leanVision: true, budget: app.budgets[0].value });
    expect(await noImage.text()).toMatch(/event: error\ndata: .*"code":"NO_CONVERSATION".*send the image again/);

    const badBudget = await post({ conversation: "x", text: "hi", image: "AAAA", leanVision: true, budget: "visionzip:lots" });
    expect(badBudget.status).toBe(400);
    expect(await badBudget.json()).toMatchObject({ code: "INVALID_INPUT", message: expect.stringContaining("budget must be one of") });

    const notAnImage = await post({ conversation: "y", text: "hi", image: Buffer.from("not an image").toString("base64"), leanVision: true, budget: app.budgets[0].value });
    expect(await notAnImage.text()).toMatch(/event: error\ndata: .*"code":"IMAGE_DECODE"/);
    // The failed first turn left no half-made conversation behind: without the image it is not open.
    expect(await (await post({ conversation: "y", text: "again" })).text()).toMatch(/"code":"NO_CONVERSATION"/);

    const notJson = await fetch(new URL("/api/chat", app.url), { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ code: "INVALID_INPUT" });

    // The server is still serving.
    expect((await fetch(app.url)).status).toBe(200);
  });

  it("New chat frees the conversation on the server; an evicted chat starts over with the image", async () => {
    const live = app.stats().liveConversations;
    await page.getByRole("button", { name: "New chat" }).click();
    await expect.poll(() => app.stats().liveConversations).toBe(live - 1);
    await ask("A fresh start?", 1);
    expect(await timingRow(0)).toMatchObject({ turn: 1, visual: 576, reused: 0 });

    // Fill the server with other chats until the page's one is evicted…
    const max = app.stats().maxConversations;
    const image = readFileSync(sampleImagePath()).toString("base64");
    for (let i = 0; i < max; i++) {
      const reply = await fetch(new URL("/api/chat", app.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ conversation: `filler-${i}`, text: "hi", image, leanVision: false })
      });
      expect(await reply.text()).toContain("event: turn");
    }
    expect(app.stats().evicted).toBeGreaterThan(0);
    // …then the page's next question starts over with the image instead of failing.
    await page.getByTestId("question").fill("Still there?");
    await page.getByTestId("send").click();
    await expect.poll(() => page.getByTestId("messages").textContent(), { timeout: 120_000 }).toContain("starting over with the image");
    await page.locator("#timings tbody tr").nth(0).waitFor({ timeout: 120_000 });
    await expect.poll(() => page.getByTestId("send").isDisabled(), { timeout: 120_000 }).toBe(false);
    expect(await timingRow(0)).toMatchObject({ turn: 1, visual: 576 });
    expect(await page.locator("#messages li.error").count()).toBe(0);
  });
});

describe("chat web app on a LLaVA-NeXT model", () => {
  let next: Awaited<ReturnType<typeof startChatServer>>;
  beforeAll(async () => {
    next = await startChatServer({ runtime: "llama", profile: "tiny-next", maxTokens: 4, threads: 1 });
  });
  afterAll(async () => {
    await next?.close();
  });

  it("draws the kept tokens on the overview and on every high-resolution tile", async () => {
    await page.goto(next.url);
    await page.getByTestId("file").setInputFiles(sampleImagePath());
    await expect.poll(() => page.getByTestId("messages").textContent()).toContain("sent with the next question");
    await ask("What is in this picture?", 1);
    const first = await timingRow(0);
    expect(first.reducer).toBe("visionzip:54+10");
    const tiles = page.getByTestId("overlay-tiles");
    expect(await tiles.isVisible()).toBe(true);
    const count = Number(await tiles.getAttribute("data-tiles"));
    // VisionZip per tile: 64 tokens for the overview and for each high-resolution tile.
    expect(count).toBeGreaterThan(0);
    expect(first.visual).toBe(64 * (1 + count));
    const kept = (await tiles.getAttribute("data-kept-per-tile"))!.split(",").map(Number);
    expect(kept).toHaveLength(count);
    // Each tile: the 53 dominant patches (CLS is the 54th token) drawn blue and its 10 contextual targets orange, in its own cell.
    const [rows, cols] = (await tiles.getAttribute("data-grid"))!.split("x").map(Number);
    expect(rows * cols).toBe(count);
    const side = (await tiles.evaluate((c: HTMLCanvasElement) => c.width)) / cols;
    for (let i = 0; i < count; i++) {
      expect(kept[i], `tile ${i + 1}`).toBe(53);
      const square = { x0: (i % cols) * side, y0: Math.floor(i / cols) * side, size: side };
      expect(await drawnCells("overlay-tiles", square), `tile ${i + 1}`).toEqual({ blue: 53, orange: 10 });
    }
    expect(await drawnCells()).toEqual({ blue: 53, orange: 10 }); // the overview
    expect(await page.getByTestId("tiles-info").textContent()).toContain("high-resolution tiles: 53, 53");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "chat-web-next.png"), fullPage: true });
  });
});
