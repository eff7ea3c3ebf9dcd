// A streaming GGUF (version 3) writer: every metadata value type, arrays included (nested too), and
// f32 / f16 / q8_0 / q4_0 tensors whose data is generated chunk by chunk while it is written, so a
// multi-GB model never has to fit in memory. Layout follows ggml/docs/gguf.md.
import { open } from "node:fs/promises";
import os from "node:os";
import { LeanVisionError } from "@leanvision/core";
import { GgufValueType } from "@leanvision/llama-adapter/gguf";
import { encodeValues, fillRandomBlocks, GGML_BLOCK, ggmlByteSize, GgmlType, Prng } from "./numeric.js";

/** GGUF metadata value types (the file's type ids), as the llama adapter's GGUF reader defines them. */
export { GgufValueType };

export type GgufScalar = number | bigint | boolean | string;
export interface GgufArray {
  itemType: GgufValueType;
  items: ReadonlyArray<GgufScalar | GgufArray>;
}
export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { type: GgufValueType.ARRAY; value: GgufArray };

/** Shorthands for metadata values. */
export const kv = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  arr: (itemType: GgufValueType, items: GgufArray["items"]): GgufValue => ({ type: GgufValueType.ARRAY, value: { itemType, items } }),
};

/** Where a tensor's values come from. */
export type TensorSource =
  | { kind: "random"; std: number; seed: number }
  | { kind: "const"; value: number }
  | { kind: "values"; values: Float32Array };

export interface GgufTensor {
  name: string;
  /** ggml order: shape[0] is the contiguous (row) dimension. */
  shape: readonly number[];
  type: GgmlType;
  source: TensorSource;
}

export interface GgufFile {
  metadata: ReadonlyArray<readonly [string, GgufValue]>;
  tensors: readonly GgufTensor[];
}

const ALIGNMENT = 32;
const CHUNK_VALUES = 1 << 22; // a whole number of blocks for every type

/** Bytes the tensor data section will take (for progress reporting). */
export function tensorDataBytes(tensors: readonly GgufTensor[]): number {
  return tensors.reduce((sum, t) => sum + alignUp(ggmlByteSize(t.type, elementCount(t)), ALIGNMENT), 0);
}

/**
 * Writes `file` to `path`. `onProgress(doneBytes, totalBytes)` is called as tensor data is written.
 * Returns the file size in bytes.
 */
export async function writeGguf(path: string, file: GgufFile, onProgress?: (done: number, total: number) => void): Promise<number> {
  if (os.endianness() !== "LE") throw new LeanVisionError("INVALID_INPUT", "The GGUF writer runs on little-endian hosts only");
  for (const tensor of file.tensors) validateTensor(tensor);
  const header = encodeHeader(file);
  const total = tensorDataBytes(file.tensors);
  const handle = await open(path, "w");
  try {
    await handle.write(header);
    let done = 0;
    for (const tensor of file.tensors) {
      for (const chunk of tensorChunks(tensor)) {
        await handle.write(chunk);
        done += chunk.byteLength;
        onProgress?.(done, total);
      }
    }
    return header.byteLength + total;
  } finally {
    await handle.close();
  }
}

function elementCount(tensor: GgufTensor): number {
  return tensor.shape.reduce((a, b) => a * b, 1);
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function validateTensor(tensor: GgufTensor): void {
  const where = `GGUF tensor "${tensor.name}"`;
  if (!(tensor.type in GGML_BLOCK)) throw new LeanVisionError("INVALID_INPUT", `${where}: unsupported ggml type ${tensor.type}; use f32, f16, q8_0 or q4_0`);
  if (tensor.shape.length < 1 || tensor.shape.length > 4 || tensor.shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new LeanVisionError("INVALID_INPUT", `${where}: shape [${tensor.shape.join(", ")}] must have 1-4 positive integer dimensions`);
  }
  const blockValues = GGML_BLOCK[tensor.type].values;
  if (tensor.shape[0] % blockValues !== 0) {
    throw new LeanVisionError("INVALID_INPUT", `${where}: rows of ${tensor.shape[0]} values are not whole ${GgmlType[tensor.type]} blocks of ${blockValues}; use f16 for it`);
  }
  if (tensor.source.kind === "values" && tensor.source.values.length !== elementCount(tensor)) {
    throw new LeanVisionError("INVALID_INPUT", `${where}: ${tensor.source.values.length} values given for shape [${tensor.shape.join(", ")}]`);
  }
}

/** Yields the tensor's encoded bytes, padded to the alignment, a few MB at a time. */
function* tensorChunks(tensor: GgufTensor): Generator<Uint8Array> {
  const count = elementCount(tensor);
  const source = tensor.source;
  const prng = source.kind === "random" ? new Prng(source.seed) : null;
  const scratch = new Float32Array(Math.min(count, CHUNK_VALUES));
  for (let start = 0; start < count; start += CHUNK_VALUES) {
    const n = Math.min(CHUNK_VALUES, count - start);
    const isLast = start + n >= count;
    const bytes = ggmlByteSize(tensor.type, n);
    const padded = isLast ? alignUp(ggmlByteSize(tensor.type, count), ALIGNMENT) - ggmlByteSize(tensor.type, start) : bytes;
    const out = new Uint8Array(padded);
    if (prng && source.kind === "random" && (tensor.type === GgmlType.Q8_0 || tensor.type === GgmlType.Q4_0)) {
      fillRandomBlocks(tensor.type, prng, source.std, out, n / 32);
    } else if (prng && source.kind === "random" && tensor.type === GgmlType.F16) {
      // Little-endian hosts only (x86, arm64), which is what GGUF files are written for here.
      prng.fillBellF16(new Uint16Array(out.buffer, out.byteOffset, n), source.std);
    } else {
      const values = scratch.subarray(0, n);
      if (prng && source.kind === "random") prng.fillBell(values, source.std);
      else if (source.kind === "const") values.fill(source.value);
      else if (source.kind === "values") values.set(source.values.subarray(start, start + n));
      encodeValues(tensor.type, values, out.subarray(0, bytes));
    }
    yield out;
  }
}

/** A growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.reserve(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number) { this.reserve(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number) { this.reserve(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number) { this.reserve(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number) { this.reserve(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number) { this.reserve(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number) { this.reserve(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: bigint) { this.reserve(8); this.view.setBigUint64(this.length, v, true); this.length += 8; }
  i64(v: bigint) { this.reserve(8); this.view.setBigInt64(this.length, v, true); this.length += 8; }
  bytes(b: Uint8Array) { this.reserve(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string) { const b = Buffer.from(s, "utf8"); this.u64(BigInt(b.length)); this.bytes(b); }
  padTo(alignment: number) { while (this.length % alignment) this.u8(0); }
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

function encodeHeader(file: GgufFile): Uint8Array {
  const sink = new ByteSink();
  sink.bytes(Buffer.from("GGUF", "ascii"));
  sink.u32(3);
  sink.u64(BigInt(file.tensors.length));
  sink.u64(BigInt(file.metadata.length));
  const seen = new Set<string>();
  for (const [key, value] of file.metadata) {
    if (seen.has(key)) throw new LeanVisionError("INVALID_INPUT", `GGUF metadata key "${key}" given twice; keys must be unique`);
    seen.add(key);
    sink.string(key);
    sink.u32(value.type);
    if (value.type === GgufValueType.ARRAY) writeArray(sink, key, value.value);
    else writeScalar(sink, key, value.type, value.value);
  }
  let offset = 0;
  for (const tensor of file.tensors) {
    sink.string(tensor.name);
    sink.u32(tensor.shape.length);
    for (const dim of tensor.shape) sink.u64(BigInt(dim));
    sink.u32(tensor.type);
    sink.u64(BigInt(offset));
    offset += alignUp(ggmlByteSize(tensor.type, elementCount(tensor)), ALIGNMENT);
  }
  sink.padTo(ALIGNMENT);
  return sink.result();
}

function writeArray(sink: ByteSink, key: string, array: GgufArray): void {
  sink.u32(array.itemType);
  sink.u64(BigInt(array.items.length));
  for (const item of array.items) {
    if (array.itemType === GgufValueType.ARRAY) {
      if (typeof item !== "object") throw badValue(key, "an array of arrays", item);
      writeArray(sink, key, item);
    } else {
      if (typeof item === "object") throw badValue(key, GgufValueType[array.itemType], item);
      writeScalar(sink, key, array.itemType, item);
    }
  }
}

function writeScalar(sink: ByteSink, key: string, type: GgufValueType, value: GgufScalar): void {
  const num = (v: GgufScalar) => {
    if (typeof v !== "number" || !Number.isFinite(v)) throw badValue(key, GgufValueType[type], v);
    return v;
  };
  const int = (v: GgufScalar, min: number, max: number) => {
    const n = num(v);
    if (!Number.isInteger(n) || n < min || n > max) throw badValue(key, GgufValueType[type], v);
    return n;
  };
  const big = (v: GgufScalar) => {
    if (typeof v === "bigint") return v;
    if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
    throw badValue(key, GgufValueType[type], v);
  };
  switch (type) {
    case GgufValueType.UINT8: return sink.u8(int(value, 0, 0xff));
    case GgufValueType.INT8: return sink.i8(int(value, -0x80, 0x7f));
    case GgufValueType.UINT16: return sink.u16(int(value, 0, 0xffff));
    case GgufValueType.INT16: return sink.i16(int(value, -0x8000, 0x7fff));
    case GgufValueType.UINT32: return sink.u32(int(value, 0, 0xffffffff));
    case GgufValueType.INT32: return sink.i32(int(value, -0x80000000, 0x7fffffff));
    case GgufValueType.FLOAT32: return sink.f32(num(value));
    case GgufValueType.FLOAT64: return sink.f64(num(value));
    case GgufValueType.UINT64: {
      const v = big(value);
      if (v < 0n || v !== BigInt.asUintN(64, v)) throw badValue(key, "UINT64", value);
      return sink.u64(v);
    }
    case GgufValueType.INT64: {
      const v = big(value);
      if (v !== BigInt.asIntN(64, v)) throw badValue(key, "INT64", value);
      return sink.i64(v);
    }
    case GgufValueType.BOOL:
      if (typeof value !== "boolean") throw badValue(key, "BOOL", value);
      return sink.u8(value ? 1 : 0);
    case GgufValueType.STRING:
      if (typeof value !== "string") throw badValue(key, "STRING", value);
      return sink.string(value);
    default:
      throw new LeanVisionError("INVALID_INPUT", `GGUF metadata "${key}": unknown value type ${type}`);
  }
}

function badValue(key: string, expected: string, value: unknown): LeanVisionError {
  return new LeanVisionError("INVALID_INPUT", `GGUF metadata "${key}": ${String(value)} is not a valid ${expected} value`);
}
