// A tiny typed WebAssembly builder: the kernels in simd-kernels.ts are written with it, one named
// method per instruction, named after the text format (`local.get` is `local_get`, `f32x4.add` is
// `f32x4_add`), so they read like WebAssembly text and need no assembler or dependency. It knows
// only what the kernels use: i32/f32/v128 values, blocks and loops, memory loads and stores, the
// f32x4 arithmetic, and a module of exported functions plus one exported memory.
//
// Binary format reference: https://webassembly.github.io/spec/core/binary/ (opcodes of the SIMD
// proposal: https://github.com/WebAssembly/simd/blob/main/proposals/simd/BinarySIMD.md).

export type ValType = "i32" | "f32" | "v128";

const VALTYPE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, v128: 0x7b };

/** A parameter or local of the function being built. */
export interface Local {
  readonly index: number;
  readonly type: ValType;
}

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Signed LEB128 (i32.const immediates). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
/** An export name (ASCII, which is its own UTF-8). */
const name = (s: string): number[] => vec([...s].map((c) => [c.charCodeAt(0) & 0x7f]));

/** A function body: instructions appended in order; each method returns the builder for chaining. */
export class Code {
  readonly bytes: number[] = [];

  private emit(...bytes: number[]): this {
    this.bytes.push(...bytes);
    return this;
  }
  private simd(opcode: number, ...immediates: number[]): this {
    return this.emit(0xfd, ...uleb(opcode), ...immediates);
  }

  // Control. `depth` counts enclosing blocks and loops outwards from 0.
  /** block ... end: `br` to it jumps past its end. */
  block(body: () => void): this {
    return this.structured(0x02, body);
  }
  /** loop ... end: `br` to it jumps back to its start. */
  loop(body: () => void): this {
    return this.structured(0x03, body);
  }
  /** A block or loop with no parameters and no results (block type 0x40), then `end`. */
  private structured(opcode: number, body: () => void): this {
    this.emit(opcode, 0x40);
    body();
    return this.emit(0x0b);
  }
  br(depth: number): this {
    return this.emit(0x0c, ...uleb(depth));
  }
  br_if(depth: number): this {
    return this.emit(0x0d, ...uleb(depth));
  }

  // Variables.
  local_get(x: Local): this {
    return this.emit(0x20, ...uleb(x.index));
  }
  local_set(x: Local): this {
    return this.emit(0x21, ...uleb(x.index));
  }

  // Scalars.
  i32_const(n: number): this {
    return this.emit(0x41, ...sleb(n));
  }
  f32_const(x: number): this {
    return this.emit(0x43, ...new Uint8Array(Float32Array.of(x).buffer));
  }
  i32_add(): this {
    return this.emit(0x6a);
  }
  i32_ge_u(): this {
    return this.emit(0x4f);
  }
  f32_add(): this {
    return this.emit(0x92);
  }
  /** Stores an f32 at address + offset; `align` is the log2 alignment hint (2: four bytes). */
  f32_store(offset = 0, align = 2): this {
    return this.emit(0x38, ...uleb(align), ...uleb(offset));
  }

  // 128-bit vectors. The kernels keep the alignment hint of v128 accesses at 0 (one byte): rows
  // need only be float-aligned, and engines ignore the hint anyway.
  v128_load(offset = 0, align = 0): this {
    return this.simd(0, ...uleb(align), ...uleb(offset));
  }
  v128_store(offset = 0, align = 0): this {
    return this.simd(11, ...uleb(align), ...uleb(offset));
  }
  f32x4_splat(): this {
    return this.simd(19);
  }
  f32x4_extract_lane(lane: 0 | 1 | 2 | 3): this {
    return this.simd(31, lane);
  }
  f32x4_eq(): this {
    return this.simd(65);
  }
  i32x4_all_true(): this {
    return this.simd(163);
  }
  f32x4_add(): this {
    return this.simd(228);
  }
  f32x4_mul(): this {
    return this.simd(230);
  }
}

/** A built function: its signature, its locals (runs of one type) and its body. */
export interface Func {
  params: ValType[];
  results: ValType[];
  locals: ValType[];
  body: number[];
}

type Locals<P, L> = { readonly [K in keyof P | keyof L]: Local };

/**
 * Builds a function. `params` and `locals` name its variables in order (parameters first, as
 * WebAssembly numbers them); `body` gets the code builder and every variable by name.
 */
export function func<P extends Record<string, ValType>, L extends Record<string, ValType>>(
  signature: { params: P; locals: L; result?: ValType },
  body: (code: Code, vars: Locals<P, L>) => void
): Func {
  const vars: Record<string, Local> = {};
  const all = [...Object.entries(signature.params), ...Object.entries(signature.locals)];
  all.forEach(([name, type], index) => (vars[name] = { index, type }));
  const code = new Code();
  body(code, vars as Locals<P, L>);
  return {
    params: Object.values(signature.params),
    results: signature.result ? [signature.result] : [],
    locals: Object.values(signature.locals),
    body: code.bytes
  };
}

/** Local declarations: one (count, type) entry per run of equal types. */
function localRuns(types: ValType[]): number[][] {
  const runs: number[][] = [];
  for (const t of types) {
    const last = runs[runs.length - 1];
    if (last && last[1] === VALTYPE[t]) last[0]++;
    else runs.push([1, VALTYPE[t]]);
  }
  return runs.map(([count, type]) => [...uleb(count), type]);
}

/**
 * The binary module: every function exported under its key, in key order, and one memory of
 * `memoryPages` initial 64 KiB pages (growable, no maximum) exported as "memory".
 */
export function assemble(funcs: Record<string, Func>, memoryPages = 1): Uint8Array {
  const names = Object.keys(funcs);
  const list = Object.values(funcs);
  const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
  const types = (ts: ValType[]) => vec(ts.map((t) => [VALTYPE[t]]));
  const EXPORT_FUNC = 0x00, EXPORT_MEMORY = 0x02, FUNC_TYPE = 0x60, END = 0x0b;
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // "\0asm", version 1
    ...section(1, vec(list.map((f) => [FUNC_TYPE, ...types(f.params), ...types(f.results)]))), // type i for function i
    ...section(3, vec(list.map((_, i) => uleb(i)))), // function i has type i
    ...section(5, vec([[0x00, ...uleb(memoryPages)]])), // memory: min pages, no max
    ...section(7, vec([...names.map((key, i) => [...name(key), EXPORT_FUNC, ...uleb(i)]), [...name("memory"), EXPORT_MEMORY, 0]])),
    ...section(10, vec(list.map((f) => {
      const body = [...vec(localRuns(f.locals)), ...f.body, END];
      return [...uleb(body.length), ...body];
    })))
  ]);
}
