import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { LeanVisionError } from "@leanvision/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  decodeValues,
  encodeValues,
  f16ToF32,
  f32ToF16,
  ggmlByteSize,
  GgmlType,
  type GgufFile,
  GgufValueType,
  kv,
  writeGguf,
} from "../src/gguf/index.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "leanvision-gguf-writer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ramp(n: number, scale: number): Float32Array {
  // Irregular but reproducible values of both signs, including an exact zero.
  return Float32Array.from({ length: n }, (_, i) => (i === 5 ? 0 : Math.sin(i * 1.7 + 0.3) * scale * (1 + (i % 7) / 3)));
}

async function readBack(file: string) {
  const parsed = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const bytes = readFileSync(file);
  const tensorBytes = (name: string) => {
    const info = parsed.tensorInfos.find((t) => t.name === name)!;
    const count = info.shape.reduce((a, b) => a * Number(b), 1);
    const start = Number(parsed.tensorDataOffset + info.offset);
    return { info, count, bytes: new Uint8Array(bytes.subarray(start, start + ggmlByteSize(info.dtype as number, count))) };
  };
  return { parsed, tensorBytes, fileBytes: bytes };
}

describe("float16 conversion", () => {
  it("matches IEEE half-precision bit patterns, rounding to nearest even", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up to infinity
    expect(f32ToF16(0.1)).toBe(0x2e66);
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -26)).toBe(0x0000); // below half of it: zero
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie, even mantissa stays
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd mantissa rounds up
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
    for (const v of [0.5, -0.25, 3.140625, 6.103515625e-5, 1024]) expect(f16ToF32(f32ToF16(v))).toBe(v);
  });
});

describe("quantized blocks", () => {
  it("q8_0 follows ggml's reference: d = amax/127, q = round(x/d)", () => {
    const values = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 8); // amax = 2
    const out = new Uint8Array(34);
    encodeValues(GgmlType.Q8_0, values, out);
    const view = new DataView(out.buffer);
    expect(view.getUint16(0, true)).toBe(f32ToF16(2 / 127));
    expect(view.getInt8(2)).toBe(-127); // -2 / (2/127)
    expect(view.getInt8(2 + 16)).toBe(0);
    expect(view.getInt8(2 + 20)).toBe(Math.round(0.5 * 63.5)); // 31.75 -> 32
  });

  it("q4_0 follows ggml's reference: d = max/-8, low nibbles hold elements 0-15", () => {
    const values = new Float32Array(32);
    values[0] = -4; // the largest magnitude, negative: d = 0.5, code 0
    values[1] = 3.5; // 3.5 / 0.5 + 8.5 = 15.5 -> 15
    values[16] = 1; // high nibble of byte 0: 1/0.5 + 8.5 = 10.5 -> 10
    const out = new Uint8Array(18);
    encodeValues(GgmlType.Q4_0, values, out);
    expect(f16ToF32(new DataView(out.buffer).getUint16(0, true))).toBe(0.5);
    expect(out[2]).toBe(0 | (10 << 4));
    expect(out[3] & 0x0f).toBe(15);
    expect(out[4]).toBe(8 | (8 << 4)); // zeros sit at code 8
    expect(Array.from(decodeValues(GgmlType.Q4_0, out, 3))).toEqual([-4, 3.5, 0]);
  });
});

describe("writeGguf round-trips through @huggingface/gguf's reader", () => {
  const file: GgufFile = {
    metadata: [
      ["general.architecture", kv.str("llama")],
      ["test.u8", { type: GgufValueType.UINT8, value: 255 }],
      ["test.i8", { type: GgufValueType.INT8, value: -128 }],
      ["test.u16", { type: GgufValueType.UINT16, value: 65535 }],
      ["test.i16", { type: GgufValueType.INT16, value: -32768 }],
      ["test.u32", kv.u32(4294967295)],
      ["test.i32", kv.i32(-2147483648)],
      ["test.f32", kv.f32(0.25)],
      ["test.bool.true", kv.bool(true)],
      ["test.bool.false", kv.bool(false)],
      ["test.string", kv.str("héllo, 世界 ▁tokens\n")],
      ["test.u64", { type: GgufValueType.UINT64, value: 2n ** 63n + 5n }],
      ["test.i64", { type: GgufValueType.INT64, value: -(2n ** 62n) }],
      ["test.f64", { type: GgufValueType.FLOAT64, value: Math.PI }],
      ["test.arr.f32", kv.arr(GgufValueType.FLOAT32, [0.5, -1.5, 2])],
      ["test.arr.i32", kv.arr(GgufValueType.INT32, [1, -2, 3])],
      ["test.arr.str", kv.arr(GgufValueType.STRING, ["<s>", "", "▁the"])],
      ["test.arr.bool", kv.arr(GgufValueType.BOOL, [true, false])],
      ["test.arr.u8", kv.arr(GgufValueType.UINT8, [0, 7, 255])],
      ["test.arr.empty", kv.arr(GgufValueType.UINT32, [])],
      ["test.arr.nested", kv.arr(GgufValueType.ARRAY, [{ itemType: GgufValueType.INT32, items: [1, 2] }, { itemType: GgufValueType.STRING, items: ["a"] }])],
    ],
    tensors: [
      { name: "t.f32", shape: [8, 3], type: GgmlType.F32, source: { kind: "values", values: ramp(24, 3) } },
      { name: "t.f16", shape: [5, 3], type: GgmlType.F16, source: { kind: "values", values: ramp(15, 2) } },
      { name: "t.q8_0", shape: [64, 3], type: GgmlType.Q8_0, source: { kind: "values", values: ramp(192, 0.05) } },
      { name: "t.q4_0", shape: [32, 2, 2], type: GgmlType.Q4_0, source: { kind: "values", values: ramp(128, 0.05) } },
      { name: "t.ones", shape: [7], type: GgmlType.F32, source: { kind: "const", value: 1 } },
      { name: "t.rand.q4_0", shape: [96, 4], type: GgmlType.Q4_0, source: { kind: "random", std: 0.02, seed: 9 } },
      { name: "t.rand.f16", shape: [33], type: GgmlType.F16, source: { kind: "random", std: 0.02, seed: 9 } },
    ],
  };

  it("keeps every metadata type and value", async () => {
    const target = path.join(dir, "meta.gguf");
    await writeGguf(target, file);
    const { parsed } = await readBack(target);
    const meta = parsed.typedMetadata as Record<string, { value: unknown; type: number; subType?: number }>;
    expect(parsed.metadata.version).toBe(3);
    expect(Number(parsed.metadata.kv_count)).toBe(file.metadata.length);
    for (const [key, expected] of file.metadata) {
      const got = meta[key];
      expect(got, key).toBeDefined();
      expect(got.type, key).toBe(expected.type);
      if (expected.type === GgufValueType.ARRAY) {
        expect(got.subType, key).toBe(expected.value.itemType);
        const items = got.value as unknown[];
        expect(items.length, key).toBe(expected.value.items.length);
        expected.value.items.forEach((item, i) => {
          if (expected.value.itemType === GgufValueType.ARRAY) expect(items[i], `${key}[${i}]`).toEqual((item as { items: unknown[] }).items);
          else if (expected.value.itemType === GgufValueType.FLOAT32) expect(items[i]).toBeCloseTo(item as number, 6);
          else expect(items[i], `${key}[${i}]`).toEqual(item);
        });
      } else if (expected.type === GgufValueType.FLOAT32) {
        expect(got.value).toBeCloseTo(expected.value as number, 6);
      } else if (expected.type === GgufValueType.UINT64 || expected.type === GgufValueType.INT64) {
        expect(BigInt(got.value as bigint), key).toBe(expected.value);
      } else {
        expect(got.value, key).toBe(expected.value);
      }
    }
  });

  it("keeps tensor names, shapes, types, alignment and bytes", async () => {
    const target = path.join(dir, "tensors.gguf");
    const size = await writeGguf(target, file);
    const { parsed, tensorBytes, fileBytes } = await readBack(target);
    expect(fileBytes.length).toBe(size);
    expect(parsed.tensorInfos.map((t) => t.name)).toEqual(file.tensors.map((t) => t.name));
    for (const tensor of file.tensors) {
      const { info, count, bytes } = tensorBytes(tensor.name);
      expect(info.shape.map(Number), tensor.name).toEqual(tensor.shape);
      expect(info.dtype as number, tensor.name).toBe(tensor.type);
      expect(Number(parsed.tensorDataOffset + info.offset) % 32, tensor.name).toBe(0);
      if (tensor.source.kind === "values") {
        const expected = new Uint8Array(ggmlByteSize(tensor.type, count));
        encodeValues(tensor.type, tensor.source.values, expected);
        expect(Buffer.from(bytes).equals(Buffer.from(expected)), tensor.name).toBe(true);
        // Decoded values stay within the format's precision of the originals.
        const decoded = decodeValues(tensor.type, bytes, count);
        const tolerance = { [GgmlType.F32]: 0, [GgmlType.F16]: 2e-3, [GgmlType.Q8_0]: 1e-3, [GgmlType.Q4_0]: 0.02 }[tensor.type];
        tensor.source.values.forEach((v, i) => expect(Math.abs(decoded[i] - v), `${tensor.name}[${i}]`).toBeLessThanOrEqual(tolerance));
      }
    }
    expect(Array.from(decodeValues(GgmlType.F32, tensorBytes("t.ones").bytes, 7))).toEqual([1, 1, 1, 1, 1, 1, 1]);
    const random = decodeValues(GgmlType.Q4_0, tensorBytes("t.rand.q4_0").bytes, 384);
    const std = Math.sqrt(random.reduce((s, v) => s + v * v, 0) / random.length);
    expect(std).toBeGreaterThan(0.015);
    expect(std).toBeLessThan(0.025);
  });

  it("writes identical bytes for the same seed", async () => {
    await writeGguf(path.join(dir, "a.gguf"), file);
    await writeGguf(path.join(dir, "b.gguf"), file);
    expect(readFileSync(path.join(dir, "a.gguf")).equals(readFileSync(path.join(dir, "b.gguf")))).toBe(true);
  });
});

describe("bad input", () => {
  const one = (tensor: GgufFile["tensors"][number]): GgufFile => ({ metadata: [], tensors: [tensor] });
  const expectCode = async (promise: Promise<unknown>, message: RegExp) => {
    const err = await promise.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(LeanVisionError);
    expect((err as LeanVisionError).code).toBe("INVALID_INPUT");
    expect((err as Error).message).toMatch(message);
  };

  it("rejects rows that are not whole quantization blocks", async () => {
    await expectCode(writeGguf(path.join(dir, "bad.gguf"), one({ name: "w", shape: [48, 2], type: GgmlType.Q8_0, source: { kind: "const", value: 0 } })), /whole Q8_0 blocks/);
  });

  it("rejects a value count that does not match the shape", async () => {
    await expectCode(writeGguf(path.join(dir, "bad.gguf"), one({ name: "w", shape: [4, 2], type: GgmlType.F32, source: { kind: "values", values: new Float32Array(7) } })), /7 values/);
  });

  it("rejects duplicate keys and out-of-range values", async () => {
    await expectCode(writeGguf(path.join(dir, "bad.gguf"), { metadata: [["k", kv.u32(1)], ["k", kv.u32(2)]], tensors: [] }), /given twice/);
    await expectCode(writeGguf(path.join(dir, "bad.gguf"), { metadata: [["k", kv.u32(-1)]], tensors: [] }), /not a valid UINT32/);
    await expectCode(writeGguf(path.join(dir, "bad.gguf"), { metadata: [["k", { type: GgufValueType.UINT8, value: 256 }]], tensors: [] }), /not a valid UINT8/);
  });
});
