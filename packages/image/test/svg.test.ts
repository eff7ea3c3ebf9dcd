// SVG is decoded without file system or network access: an SVG must not render files next to it,
// whether it is given as a path or as bytes.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type Server } from "node:http";
import sharp from "sharp";
import { decodeImage, type RawRgbImage } from "@leanvision/image";

let dir: string;
let server: Server;
let served = 0;
let port = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lv-svg-"));
  // The neighbours an SVG might reach for: a red PNG, a red text file, a red SVG and a red stylesheet.
  const redPng = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
  writeFileSync(join(dir, "secret.png"), redPng);
  writeFileSync(join(dir, "secret.txt"), "SECRET ".repeat(20));
  writeFileSync(join(dir, "other.svg"), `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect id="r" width="40" height="40" fill="red"/></svg>`);
  writeFileSync(join(dir, "evil.css"), `rect { fill: red; }`);
  // And a local web server handing out the same PNG, counting requests.
  server = createServer((_req, res) => {
    served++;
    res.writeHead(200, { "content-type": "image/png" }).end(redPng);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function redPixels(img: RawRgbImage) {
  let red = 0;
  for (let i = 0; i < img.data.length; i += 3) if (img.data[i] > 200 && img.data[i + 1] < 60 && img.data[i + 2] < 60) red++;
  return red;
}

const SVG = (body: string, width = 40, height = 40, extra = "") =>
  `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:xi="http://www.w3.org/2001/XInclude"${extra} width="${width}" height="${height}">` +
  `<rect width="${width}" height="${height}" fill="white"/>${body}</svg>`;

const ATTEMPTS: Record<string, () => string> = {
  "image href (relative)": () => SVG(`<image href="secret.png" width="40" height="40"/>`),
  "image xlink:href (relative)": () => SVG(`<image xlink:href="secret.png" width="40" height="40"/>`),
  "image href (file:// absolute)": () => SVG(`<image href="file://${join(dir, "secret.png")}" width="40" height="40"/>`),
  "image href (absolute path)": () => SVG(`<image href="${join(dir, "secret.png")}" width="40" height="40"/>`),
  "image href (http)": () => SVG(`<image href="http://127.0.0.1:${port}/secret.png" width="40" height="40"/>`),
  "use of another file's element": () => SVG(`<use href="other.svg#r"/>`),
  "XInclude of a text file": () => SVG(`<text x="0" y="30" font-size="40" fill="red"><xi:include href="secret.txt" parse="text"/></text>`, 400, 40),
  "CSS @import": () => SVG(`<style>@import url("evil.css");</style>`),
  "external entity": () =>
    `<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file://${join(dir, "secret.txt")}">]>` +
    SVG(`<text x="0" y="30" font-size="40" fill="red">&x;</text>`, 400, 40)
};

describe("SVG without file system or network access", () => {
  it("renders an embedded data: image (so the checks below can see red)", async () => {
    const png = (await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer()).toString("base64");
    const path = join(dir, "inline.svg");
    writeFileSync(path, SVG(`<image href="data:image/png;base64,${png}" width="40" height="40"/>`));
    const img = await decodeImage(path);
    expect(redPixels(img)).toBe(40 * 40);
    // And a plain red rectangle renders as red too.
    expect(redPixels(await decodeImage(Buffer.from(SVG(`<rect width="40" height="40" fill="red"/>`))))).toBe(1600);
  });

  for (const [name, make] of Object.entries(ATTEMPTS)) {
    it(`does not load a neighbour file: ${name}`, async () => {
      const svg = make();
      const path = join(dir, `attempt-${name.replace(/\W+/g, "-")}.svg`);
      writeFileSync(path, svg);
      // sharp given the path itself would render the neighbour: the very hole decodeImage closes.
      for (const input of [path, Buffer.from(svg)]) {
        const img = await decodeImage(input).catch((error) => error);
        if (img instanceof Error) {
          // Refusing the file outright is fine too, as long as it is a typed decode error.
          expect(img).toMatchObject({ code: "IMAGE_DECODE" });
          continue;
        }
        expect(redPixels(img), `${name} via ${typeof input === "string" ? "path" : "bytes"}`).toBe(0);
      }
      expect(served).toBe(0);
    });
  }

  it("proves the attack is real: sharp alone, given the path, renders the neighbour", async () => {
    const path = join(dir, "control.svg");
    writeFileSync(path, ATTEMPTS["image href (relative)"]());
    const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect(redPixels({ data, width: info.width, height: info.height })).toBe(1600);
  });
});
