// decodeImage: formats, colour handling, bad input, pixel limits, shrink-on-load. Fixtures are made
// here with sharp, small, in a temporary folder.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { LeanVisionError } from "@leanvision/core";
import { decodeImage, DEFAULT_MAX_PIXELS, type RawRgbImage } from "@leanvision/image";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "lv-image-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RED = { r: 220, g: 30, b: 40 };

/** A width×height test image: left half `RED`, right half blue, so orientation and size show. */
function halves(width: number, height: number, channels: 3 | 4 = 3) {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const [r, g, b] = x < width / 2 ? [RED.r, RED.g, RED.b] : [20, 40, 230];
      data[i] = r; data[i + 1] = g; data[i + 2] = b;
      if (channels === 4) data[i + 3] = x < width / 2 ? 255 : 0;
    }
  }
  return sharp(data, { raw: { width, height, channels } });
}

function pixel(img: RawRgbImage, x: number, y: number) {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function near(actual: number[], expected: number[], tolerance = 12) {
  expect(actual.every((v, k) => Math.abs(v - expected[k]) <= tolerance), `${actual} ≈ ${expected}`).toBe(true);
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp) {
  const error = await promise.then(() => null, (e) => e);
  expect(error, `expected ${code}`).toBeInstanceOf(LeanVisionError);
  expect(error.code).toBe(code);
  if (message) expect(error.message).toMatch(message);
  return error as LeanVisionError;
}

function expectRgb(img: RawRgbImage, width: number, height: number) {
  expect(img.width).toBe(width);
  expect(img.height).toBe(height);
  expect(img.data).toBeInstanceOf(Uint8Array);
  expect(img.data.length).toBe(width * height * 3);
}

/** A PNG whose header claims width×height, followed by a tiny valid IDAT and IEND: nothing to decode until a decoder tries. */
function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const typed = Buffer.concat([Buffer.from(type, "latin1"), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([len, typed, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(1 + width * 3))), // one row
    chunk("IEND", Buffer.alloc(0))
  ]);
}

describe("formats", () => {
  const formats = [
    ["jpeg", (s: sharp.Sharp) => s.jpeg({ quality: 95 })],
    ["png", (s: sharp.Sharp) => s.png()],
    ["webp", (s: sharp.Sharp) => s.webp({ quality: 95 })],
    ["gif", (s: sharp.Sharp) => s.gif()],
    ["tiff", (s: sharp.Sharp) => s.tiff()],
    ["avif", (s: sharp.Sharp) => s.avif({ quality: 90 })]
  ] as const;

  for (const [name, encode] of formats) {
    it(`decodes ${name} from bytes and from a file`, async () => {
      const bytes = await encode(halves(64, 32)).toBuffer();
      const path = join(dir, `halves.${name}`);
      writeFileSync(path, bytes);
      for (const input of [bytes, new Uint8Array(bytes), path]) {
        const img = await decodeImage(input);
        expectRgb(img, 64, 32);
        near(pixel(img, 8, 16), [RED.r, RED.g, RED.b], 24);
        near(pixel(img, 56, 16), [20, 40, 230], 24);
      }
    });
  }

  it("reads a Uint8Array that is a view into a larger buffer", async () => {
    const png = await halves(20, 10).png().toBuffer();
    const backing = new Uint8Array(png.length + 100);
    backing.fill(0xab);
    backing.set(png, 37);
    const img = await decodeImage(new Uint8Array(backing.buffer, 37, png.length));
    expectRgb(img, 20, 10);
    near(pixel(img, 2, 5), [RED.r, RED.g, RED.b], 0);
  });

  it("renders SVG", async () => {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="20" height="20" fill="rgb(220,30,40)"/><rect x="20" width="20" height="20" fill="rgb(20,40,230)"/></svg>`;
    const img = await decodeImage(Buffer.from(svg));
    expectRgb(img, 40, 20);
    near(pixel(img, 5, 10), [220, 30, 40], 2);
    near(pixel(img, 35, 10), [20, 40, 230], 2);
  });
});

describe("channels and colour", () => {
  it("drops alpha without flattening (like stb_image with 3 channels)", async () => {
    const png = await halves(16, 8, 4).png().toBuffer();
    const img = await decodeImage(png);
    expectRgb(img, 16, 8);
    // The right half is fully transparent blue: still blue, not composited onto black or white.
    near(pixel(img, 12, 4), [20, 40, 230], 0);
    near(pixel(img, 2, 4), [RED.r, RED.g, RED.b], 0);
  });

  it("expands greyscale and greyscale+alpha to RGB", async () => {
    const grey = Buffer.alloc(10 * 10, 77);
    for (const [channels, input] of [
      [1, grey],
      [2, Buffer.from(Array.from({ length: 100 }, () => [77, 128]).flat())]
    ] as const) {
      const png = await sharp(input, { raw: { width: 10, height: 10, channels } }).toColourspace("b-w").png().toBuffer();
      expect((await sharp(png).metadata()).channels).toBe(channels);
      const img = await decodeImage(png);
      expectRgb(img, 10, 10);
      expect(pixel(img, 3, 3)).toEqual([77, 77, 77]);
    }
  });

  it("reduces 16-bit PNG to 8-bit and converts CMYK JPEG to sRGB", async () => {
    const png16 = await halves(8, 8).toColourspace("rgb16").png().toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe("ushort");
    const a = await decodeImage(png16);
    expectRgb(a, 8, 8);
    near(pixel(a, 1, 1), [RED.r, RED.g, RED.b], 2);

    const cmyk = await halves(8, 8).toColourspace("cmyk").jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe("cmyk");
    const b = await decodeImage(cmyk);
    expectRgb(b, 8, 8);
    near(pixel(b, 1, 1), [RED.r, RED.g, RED.b], 40);
  });

  it("does not apply EXIF orientation", async () => {
    const rotated = await halves(40, 20).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(rotated).metadata()).orientation).toBe(6);
    const img = await decodeImage(rotated);
    expectRgb(img, 40, 20);
    near(pixel(img, 5, 10), [RED.r, RED.g, RED.b], 24);
  });

  it("decodes the first frame of an animated GIF", async () => {
    const frames = Buffer.concat([Buffer.alloc(12 * 10 * 3, 200), Buffer.alloc(12 * 10 * 3, 20)]);
    const gif = await sharp(frames, { raw: { width: 12, height: 20, channels: 3, pageHeight: 10 } as sharp.CreateRaw }).gif().toBuffer();
    const img = await decodeImage(gif);
    expectRgb(img, 12, 10);
  });
});

describe("bad input", () => {
  it("refuses corrupt, truncated and empty bytes with IMAGE_DECODE", async () => {
    const png = await halves(64, 64).png().toBuffer();
    const jpeg = await halves(64, 64).jpeg().toBuffer();
    let seed = 7;
    const random = Buffer.from(Array.from({ length: 4096 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24));
    const flipped = Buffer.from(png);
    for (let i = 40; i < flipped.length; i += 7) flipped[i] ^= 0xff;
    for (const bytes of [random, Buffer.from("not an image"), png.subarray(0, png.length >> 1), jpeg.subarray(0, jpeg.length >> 1), png.subarray(0, 20), flipped, Buffer.from("<svg")]) {
      await rejectsWith(decodeImage(bytes), "IMAGE_DECODE", /cannot decode/);
    }
    await rejectsWith(decodeImage(Buffer.alloc(0)), "IMAGE_DECODE", /empty/);
    const emptyFile = join(dir, "empty.png");
    writeFileSync(emptyFile, "");
    await rejectsWith(decodeImage(emptyFile), "IMAGE_DECODE", /empty/);
  });

  it("refuses missing files, folders and special files with INVALID_INPUT", async () => {
    await rejectsWith(decodeImage(join(dir, "nope.png")), "INVALID_INPUT", /not found/);
    mkdirSync(join(dir, "folder.png"), { recursive: true });
    await rejectsWith(decodeImage(join(dir, "folder.png")), "INVALID_INPUT", /not a regular file/);
    await rejectsWith(decodeImage("/dev/zero"), "INVALID_INPUT", /not a regular file/);
    await rejectsWith(decodeImage(""), "INVALID_INPUT");
  });

  it("refuses values that are no image input with INVALID_INPUT", async () => {
    for (const value of [null, undefined, 42, true, {}, [], new ArrayBuffer(8), { data: "abc", width: 1, height: 1 }]) {
      await rejectsWith(decodeImage(value as never), "INVALID_INPUT");
    }
  });
});

describe("raw RGB input", () => {
  it("passes packed RGB through and accepts Uint8ClampedArray", async () => {
    const data = new Uint8Array(4 * 3 * 3).map((_, i) => i);
    expect(await decodeImage({ data, width: 4, height: 3 })).toEqual({ data, width: 4, height: 3 });
    const clamped = await decodeImage({ data: new Uint8ClampedArray(data) as never, width: 4, height: 3 });
    expect(Array.from(clamped.data)).toEqual(Array.from(data));
  });

  it("refuses wrong byte counts and bad sizes with INVALID_INPUT", async () => {
    await rejectsWith(decodeImage({ data: new Uint8Array(4 * 3 * 4), width: 4, height: 3 }), "INVALID_INPUT", /needs 36 bytes .* got 48/);
    for (const [width, height] of [[0, 3], [4, -1], [1.5, 2], [NaN, 2], ["4", 3]]) {
      await rejectsWith(decodeImage({ data: new Uint8Array(36), width, height } as never), "INVALID_INPUT");
    }
    await rejectsWith(decodeImage({ width: 1, height: 1 } as never), "INVALID_INPUT");
  });

  it("applies the pixel limit and fit to raw input too", async () => {
    const data = new Uint8Array(100 * 50 * 3).fill(90);
    await rejectsWith(decodeImage({ data, width: 100, height: 50 }, { maxPixels: 4999 }), "IMAGE_TOO_LARGE");
    const img = await decodeImage({ data, width: 100, height: 50 }, { fit: { width: 20, height: 20 } });
    expectRgb(img, 20, 10);
    expect(pixel(img, 5, 5)).toEqual([90, 90, 90]);
  });
});

describe("pixel limit", () => {
  it("defaults to 50 megapixels", () => {
    expect(DEFAULT_MAX_PIXELS).toBe(50_000_000);
  });

  it("refuses a 16000×16000 PNG from its header, before decoding, saying how to raise the limit", async () => {
    const bomb = pngHeaderOnly(16000, 16000);
    expect(bomb.length).toBeLessThan(100_000);
    const t0 = performance.now();
    const error = await rejectsWith(decodeImage(bomb), "IMAGE_TOO_LARGE", /16000×16000 \(256 megapixels\), over the limit of 50 megapixels/);
    expect(error.message).toMatch(/maxPixels/);
    expect(performance.now() - t0).toBeLessThan(1000);
    // As a file too.
    const path = join(dir, "bomb.png");
    writeFileSync(path, bomb);
    await rejectsWith(decodeImage(path), "IMAGE_TOO_LARGE");
    // A large file is refused from the header at its start, before the rest is read.
    const padded = join(dir, "bomb-padded.png");
    writeFileSync(padded, Buffer.concat([bomb, Buffer.alloc(3 * 2 ** 20)]));
    await rejectsWith(decodeImage(padded), "IMAGE_TOO_LARGE", /16000×16000/);
    // And with a fit: the limit is on the source, whatever size is asked for.
    await rejectsWith(decodeImage(bomb, { fit: { width: 336, height: 336 } }), "IMAGE_TOO_LARGE");
  });

  it("refuses a 122-byte 16000×16000 SVG and a JPEG whose header claims 60000×60000", async () => {
    const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="16000" height="16000"><rect width="16000" height="16000" fill="red"/></svg>`);
    await rejectsWith(decodeImage(svg), "IMAGE_TOO_LARGE", /16000×16000/);

    // Patch a small JPEG's SOF0 frame size (FFC0, length, precision, height, width).
    const jpeg = Buffer.from(await halves(16, 16).jpeg().toBuffer());
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    expect(sof).toBeGreaterThan(0);
    jpeg.writeUInt16BE(60000, sof + 5);
    jpeg.writeUInt16BE(60000, sof + 7);
    await rejectsWith(decodeImage(jpeg), "IMAGE_TOO_LARGE", /60000×60000/);
  });

  it("is configurable: maxPixels lowers or raises it", async () => {
    const png = await halves(200, 200).png().toBuffer();
    await rejectsWith(decodeImage(png, { maxPixels: 39_999 }), "IMAGE_TOO_LARGE", /200×200/);
    expectRgb(await decodeImage(png, { maxPixels: 40_000 }), 200, 200);
    expectRgb(await decodeImage(png, { maxPixels: Infinity }), 200, 200);
    // Raised above the header's claim, the bomb reaches the decoder, which fails on the missing rows.
    await rejectsWith(decodeImage(pngHeaderOnly(3000, 3000), { maxPixels: Infinity }), "IMAGE_DECODE");
  });

  it("refuses files larger than any image within the limit could be, without reading them", async () => {
    const path = join(dir, "sparse.png");
    writeFileSync(path, await halves(10, 10).png().toBuffer());
    truncateSync(path, 70 * 2 ** 20); // sparse: 70 MiB on paper, nothing on disk
    // maxPixels 1000 allows at most 1000 × 8 bytes + 64 MiB of file.
    await rejectsWith(decodeImage(path, { maxPixels: 1000 }), "IMAGE_TOO_LARGE", /70 MiB/);
  });

  it("validates its options", async () => {
    const png = await halves(4, 4).png().toBuffer();
    for (const maxPixels of [0, -1, 1.5, NaN, "10"]) await rejectsWith(decodeImage(png, { maxPixels } as never), "INVALID_OPTIONS");
    for (const fit of [{ width: 0, height: 1 }, { width: 10 }, null, { width: 2.5, height: 2 }]) await rejectsWith(decodeImage(png, { fit } as never), "INVALID_OPTIONS");
  });
});

describe("shrink-on-load (fit)", () => {
  it("decodes a JPEG straight to at most the fit size, aspect kept", async () => {
    const jpeg = await halves(4000, 3000).jpeg({ quality: 90 }).toBuffer();
    const img = await decodeImage(jpeg, { fit: { width: 336, height: 336 } });
    expectRgb(img, 336, 252);
    near(pixel(img, 40, 120), [RED.r, RED.g, RED.b], 24);
    near(pixel(img, 300, 120), [20, 40, 230], 24);
  });

  it("fits PNG, WebP and SVG, and never enlarges", async () => {
    const png = await halves(3000, 1000).png().toBuffer();
    expectRgb(await decodeImage(png, { fit: { width: 336, height: 336 } }), 336, 112);
    const webp = await halves(1000, 3000).webp().toBuffer();
    expectRgb(await decodeImage(webp, { fit: { width: 336, height: 336 } }), 112, 336);
    const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="2000"><rect width="4000" height="2000" fill="red"/></svg>`);
    expectRgb(await decodeImage(svg, { fit: { width: 400, height: 400 } }), 400, 200);
    const small = await halves(100, 50).png().toBuffer();
    expectRgb(await decodeImage(small, { fit: { width: 336, height: 336 } }), 100, 50);
  });
});
