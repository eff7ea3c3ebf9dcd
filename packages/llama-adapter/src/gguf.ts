// A strict GGUF header reader: metadata and tensor infos, no tensor data. It accepts only what
// ggml's own reader (ggml/src/gguf.cpp) accepts, checks everything that reader checks, and also that
// every tensor's data lies within the file, so a file it returns can be handed to llama.cpp's loader.
// Layout: ggml/docs/gguf.md (packages/testkit/src/gguf/writer.ts writes it).
//
// Errors are LeanVisionError: INVALID_INPUT when the file is missing or not a GGUF file at all,
// INVALID_MODEL when it is a truncated or corrupt one, UNSUPPORTED_MODEL for tensor types LeanVision
// does not read.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { LeanVisionError } from "@leanvision/core";

/** GGUF metadata value types (the file's type ids). */
export enum GgufValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;

/** One metadata entry. Arrays (type ARRAY) carry their item type; GGUF has no nested arrays that ggml reads. */
export type GgufEntry =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: GgufScalar[] };

/**
 * The ggml tensor types LeanVision reads, with their block layout (ggml/src/ggml-common.h): float
 * types and the quantizations converters write for weights.
 */
export const GGML_TYPES: Readonly<Record<number, { name: string; blockValues: number; blockBytes: number }>> = Object.fromEntries(
  ([ // [ggml type id, name, values per block, bytes per block]
    [0, "F32", 1, 4], [1, "F16", 1, 2], [30, "BF16", 1, 2],
    [2, "Q4_0", 32, 18], [3, "Q4_1", 32, 20], [6, "Q5_0", 32, 22], [7, "Q5_1", 32, 24], [8, "Q8_0", 32, 34],
    [10, "Q2_K", 256, 84], [11, "Q3_K", 256, 110], [12, "Q4_K", 256, 144], [13, "Q5_K", 256, 176], [14, "Q6_K", 256, 210],
  ] as const).map(([id, name, blockValues, blockBytes]) => [id, { name, blockValues, blockBytes }])
);
/** Quantizations ggml has (ggml.h, GGML_TYPE_COUNT = 43) that LeanVision does not read; other ids (integer types among them) are no weight type. */
const OTHER_QUANT_TYPES = new Set([9, 15, 16, 17, 18, 19, 20, 21, 22, 23, 29, 34, 35, 39, 40, 41, 42]);

export function ggmlTypeName(type: number): string {
  return GGML_TYPES[type]?.name ?? `ggml type ${type}`;
}

export interface GgufTensorInfo {
  name: string;
  /** Dimensions in ggml order (ne[0] is the contiguous one), as stored: 1 to 4 of them. */
  shape: number[];
  /** ggml type id, a key of GGML_TYPES. */
  type: number;
  /** Absolute file offset of the tensor's data, and its size in bytes. */
  fileOffset: number;
  byteSize: number;
}

export interface GgufHeader {
  path: string;
  version: number;
  metadata: Map<string, GgufEntry>;
  /** In file order. */
  tensors: Map<string, GgufTensorInfo>;
  fileSize: number;
}

const GGUF_MAX_DIMS = 4;
const GGML_MAX_NAME = 64;
const GGUF_MAX_ELEMENTS = 1024 * 1024 * 1024; // gguf.cpp's GGUF_MAX_STRING_LENGTH / GGUF_MAX_ARRAY_ELEMENTS
const SCALAR_BYTES: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};
const READ_WINDOW = 1 << 20;

/** Reads and checks the header of the GGUF file at `path` (synchronously: a header is small). */
export function readGgufHeader(path: string): GgufHeader {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new LeanVisionError("INVALID_INPUT", `file not found or not readable: ${path}`, { cause: err });
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new LeanVisionError("INVALID_INPUT", `${path} is not a file`);
    return parseHeader(new FileCursor(fd, stat.size, path));
  } finally {
    closeSync(fd);
  }
}

function parseHeader(c: FileCursor): GgufHeader {
  const path = c.path;
  if (c.size < 4 || c.ascii(4, "the magic") !== "GGUF") {
    throw new LeanVisionError("INVALID_INPUT", `${path} is not a GGUF file (bad magic)`);
  }
  const version = c.u32("the version");
  if (version < 2 || version > 3) c.corrupt(`GGUF version ${version} (ggml reads versions 2 and 3)`);
  const nTensors = c.count("the tensor count", 8 + 4 + 4 + 8);
  const nKv = c.count("the metadata count", 8 + 4);

  const metadata = new Map<string, GgufEntry>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key ${i}`);
    if (key === "") c.corrupt(`metadata key ${i} is empty`);
    if (metadata.has(key)) c.corrupt(`metadata key ${key} appears twice`);
    metadata.set(key, readEntry(c, key));
  }

  const alignmentEntry = metadata.get("general.alignment");
  if (alignmentEntry && alignmentEntry.type !== GgufValueType.UINT32) c.corrupt("general.alignment is not a UINT32");
  const alignment = alignmentEntry ? (alignmentEntry.value as number) : 32;
  if (alignment === 0 || (alignment & (alignment - 1)) !== 0) c.corrupt(`general.alignment ${alignment} is not a power of 2`);

  const infos: Array<Omit<GgufTensorInfo, "fileOffset"> & { offset: bigint }> = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`the name of tensor ${i}`);
    if (Buffer.byteLength(name) >= GGML_MAX_NAME) c.corrupt(`tensor name ${JSON.stringify(name.slice(0, 80))} is ${GGML_MAX_NAME} bytes or longer`);
    if (names.has(name)) c.corrupt(`tensor ${name} appears twice`);
    names.add(name);
    const nDims = c.u32(`the dimension count of ${name}`);
    if (nDims > GGUF_MAX_DIMS) c.corrupt(`tensor ${name} has ${nDims} dimensions (at most ${GGUF_MAX_DIMS})`);
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const ne = c.i64(`dimension ${d} of ${name}`);
      if (ne < 0n || ne > BigInt(Number.MAX_SAFE_INTEGER)) c.corrupt(`tensor ${name} has the dimension ${ne}`);
      dims.push(ne);
    }
    const elements = dims.reduce((a, b) => a * b, 1n);
    if (elements > BigInt(Number.MAX_SAFE_INTEGER)) c.corrupt(`tensor ${name} has ${elements} elements`);
    const type = c.i32(`the type of ${name}`);
    const traits = GGML_TYPES[type];
    if (!traits) {
      if (OTHER_QUANT_TYPES.has(type)) {
        throw new LeanVisionError("UNSUPPORTED_MODEL", `${path}: tensor ${name} is of ggml type ${type}, which LeanVision does not read ` +
          `(it reads ${Object.values(GGML_TYPES).map((t) => t.name).join(", ")})`);
      }
      c.corrupt(`tensor ${name} has the ggml type ${type}, which is no weight type`);
    }
    const shape = dims.map(Number);
    if ((shape[0] ?? 1) % traits.blockValues !== 0) {
      c.corrupt(`tensor ${name} (${traits.name}) has rows of ${shape[0]} values, not a multiple of its block size ${traits.blockValues}`);
    }
    const byteSize = (Number(elements) / traits.blockValues) * traits.blockBytes;
    infos.push({ name, shape, type, byteSize, offset: c.u64(`the data offset of ${name}`) });
  }

  // Tensor data starts at the next alignment boundary; ggml requires the tensors to be packed in
  // order, each padded to the alignment.
  const dataOffset = alignUp(c.pos, alignment);
  if (nTensors > 0 && dataOffset > c.size) c.truncated("the tensor data section");
  const tensors = new Map<string, GgufTensorInfo>();
  let expected = 0;
  for (const { offset, ...info } of infos) {
    if (offset !== BigInt(expected)) c.corrupt(`tensor ${info.name} has data offset ${offset}, expected ${expected}`);
    const fileOffset = dataOffset + expected;
    if (fileOffset + info.byteSize > c.size) {
      throw new LeanVisionError("INVALID_MODEL", `${path} is truncated: the data of tensor ${info.name} (bytes ${fileOffset} to ` +
        `${fileOffset + info.byteSize}) lies past the end of the file (${c.size} bytes)`);
    }
    tensors.set(info.name, { ...info, fileOffset });
    expected += alignUp(info.byteSize, alignment);
  }
  return { path, version, metadata, tensors, fileSize: c.size };
}

function readEntry(c: FileCursor, key: string): GgufEntry {
  const what = `the value of ${key}`;
  const type = c.u32(`the type of ${key}`) as GgufValueType;
  if (type !== GgufValueType.ARRAY) return { type: checkedType(c, key, type), value: readScalar(c, type, what) } as GgufEntry;
  const itemType = checkedType(c, key, c.u32(`the item type of ${key}`) as GgufValueType);
  const n = c.u64(`the length of ${key}`);
  const minBytes = itemType === GgufValueType.STRING ? 8 : SCALAR_BYTES[itemType]!;
  if (n > BigInt(GGUF_MAX_ELEMENTS) || Number(n) * minBytes > c.size - c.pos) c.truncated(what);
  const value: GgufScalar[] = new Array(Number(n));
  for (let i = 0; i < value.length; i++) value[i] = readScalar(c, itemType, what);
  return { type, itemType, value };
}

function checkedType(c: FileCursor, key: string, type: GgufValueType): Exclude<GgufValueType, GgufValueType.ARRAY> {
  if (type === GgufValueType.ARRAY || !(type in GgufValueType)) c.corrupt(`key ${key} has the invalid value type ${type}`);
  return type as Exclude<GgufValueType, GgufValueType.ARRAY>;
}

function readScalar(c: FileCursor, type: GgufValueType, what: string): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8: return c.view(1, what).getUint8(0);
    case GgufValueType.INT8: return c.view(1, what).getInt8(0);
    case GgufValueType.BOOL: return c.view(1, what).getInt8(0) !== 0;
    case GgufValueType.UINT16: return c.view(2, what).getUint16(0, true);
    case GgufValueType.INT16: return c.view(2, what).getInt16(0, true);
    case GgufValueType.UINT32: return c.u32(what);
    case GgufValueType.INT32: return c.i32(what);
    case GgufValueType.FLOAT32: return c.view(4, what).getFloat32(0, true);
    case GgufValueType.UINT64: return c.u64(what);
    case GgufValueType.INT64: return c.i64(what);
    case GgufValueType.FLOAT64: return c.view(8, what).getFloat64(0, true);
    case GgufValueType.STRING: return c.string(what);
    default: return c.corrupt(`${what} has the invalid value type ${type}`);
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Sequential little-endian reads from a file, through a window of at least READ_WINDOW bytes. */
class FileCursor {
  pos = 0;
  private window = Buffer.alloc(0);
  private windowStart = 0;

  constructor(private readonly fd: number, readonly size: number, readonly path: string) {}

  corrupt(reason: string): never {
    throw new LeanVisionError("INVALID_MODEL", `${this.path} is a corrupt GGUF file: ${reason}`);
  }

  truncated(what: string): never {
    throw new LeanVisionError("INVALID_MODEL", `${this.path} is a truncated or corrupt GGUF file: ${what} runs past the end of the file (${this.size} bytes)`);
  }

  /** A view of the next n bytes, consumed. */
  view(n: number, what: string): DataView {
    if (n > this.size - this.pos) this.truncated(what);
    if (this.pos < this.windowStart || this.pos + n > this.windowStart + this.window.length) {
      const length = Math.min(Math.max(n, READ_WINDOW), this.size - this.pos);
      this.window = Buffer.allocUnsafe(length);
      for (let done = 0; done < length; ) {
        const read = readSync(this.fd, this.window, done, length - done, this.pos + done);
        if (read === 0) this.truncated(what);
        done += read;
      }
      this.windowStart = this.pos;
    }
    const at = this.pos - this.windowStart;
    this.pos += n;
    return new DataView(this.window.buffer, this.window.byteOffset + at, n);
  }

  u32(what: string): number {
    return this.view(4, what).getUint32(0, true);
  }
  i32(what: string): number {
    return this.view(4, what).getInt32(0, true);
  }
  u64(what: string): bigint {
    return this.view(8, what).getBigUint64(0, true);
  }
  i64(what: string): bigint {
    return this.view(8, what).getBigInt64(0, true);
  }

  /** A u64 count of entries that each take at least `minBytes`, so it cannot exceed what the file holds. */
  count(what: string, minBytes: number): number {
    const n = this.u64(what);
    if (n > BigInt(Math.floor((this.size - this.pos) / minBytes))) {
      this.corrupt(`${what} ${n} is more than the ${this.size - this.pos} bytes left can hold (the file is truncated, or the count is wrong)`);
    }
    return Number(n);
  }

  string(what: string): string {
    const length = this.u64(`the length of ${what}`);
    if (length > BigInt(Math.min(GGUF_MAX_ELEMENTS, this.size - this.pos))) this.truncated(what);
    const n = Number(length);
    const view = this.view(n, what);
    return Buffer.from(view.buffer, view.byteOffset, n).toString("utf8");
  }

  ascii(n: number, what: string): string {
    const view = this.view(n, what);
    return Buffer.from(view.buffer, view.byteOffset, n).toString("latin1");
  }
}
