// The WebAssembly SIMD kernels behind the reducers' fast paths, written with the typed builder in
// wasm.ts (one method per instruction, named as in WebAssembly text). Every kernel works on byte
// offsets into the module's memory; every vector loop runs over n bytes, a multiple of 16, four
// float32 lanes per step. simd.ts instantiates the module; test/simd.test.ts pins its bytes and
// checks every kernel against plain arithmetic.
import { assemble, func, type Code, type Func, type Local } from "./wasm.js";

const i32 = "i32", f32 = "f32", v128 = "v128";

/** for (i = 0; i < n; i += 16) body(): `i` must be 0 on entry (fresh locals are). */
function forEachVector(w: Code, i: Local, n: Local, body: () => void): void {
  w.block(() =>
    w.loop(() => {
      w.local_get(i).local_get(n).i32_ge_u().br_if(1); // i >= n: leave the block
      body();
      w.local_get(i).i32_const(16).i32_add().local_set(i).br(0); // i += 16, again
    })
  );
}

/** for (j = 0; j < count; j++) body(): the rows loop of dots and norms. */
function forEachRow(w: Code, j: Local, count: Local, body: () => void): void {
  w.i32_const(0).local_set(j);
  w.block(() =>
    w.loop(() => {
      w.local_get(j).local_get(count).i32_ge_u().br_if(1);
      body();
      w.local_get(j).i32_const(1).i32_add().local_set(j).br(0);
    })
  );
}

/** Pushes the address base + i. */
const address = (w: Code, base: Local, i: Local) => w.local_get(base).local_get(i).i32_add();
/** Pushes the four floats at base + i. */
const load = (w: Code, base: Local, i: Local) => address(w, base, i).v128_load();
/** Pushes the sum of v's four lanes, added as (l0 + l1) + (l2 + l3). */
const lanesSum = (w: Code, v: Local) =>
  w.local_get(v).f32x4_extract_lane(0).local_get(v).f32x4_extract_lane(1).f32_add()
    .local_get(v).f32x4_extract_lane(2).local_get(v).f32x4_extract_lane(3).f32_add()
    .f32_add();
/** to = [x, x, x, x] for the f32 local x. */
const splat = (w: Code, x: Local, to: Local) => w.local_get(x).f32x4_splat().local_set(to);
/** p += 4 (bytes: one float). */
const nextFloat = (w: Code, p: Local) => w.local_get(p).i32_const(4).i32_add().local_set(p);

/**
 * The body of dots and norms: for each of the `count` rows u (n bytes each, from `rows`), the
 * float32 dot product of `left` (or, when null, of u itself) with u, stored at res + 4 j.
 */
function rowDots(w: Code, v: { rows: Local; count: Local; n: Local; res: Local; left: Local | null; i: Local; j: Local; u: Local; r: Local; s: Local }): void {
  w.local_get(v.rows).local_set(v.u).local_get(v.res).local_set(v.r);
  forEachRow(w, v.j, v.count, () => {
    w.f32_const(0).f32x4_splat().local_set(v.s).i32_const(0).local_set(v.i);
    forEachVector(w, v.i, v.n, () => {
      w.local_get(v.s);
      load(w, v.left ?? v.u, v.i); load(w, v.u, v.i);
      w.f32x4_mul().f32x4_add().local_set(v.s);
    });
    w.local_get(v.r);
    lanesSum(w, v.s);
    w.f32_store();
    w.local_get(v.u).local_get(v.n).i32_add().local_set(v.u); // next row
    nextFloat(w, v.r);
  });
}

export const KERNELS = {
  /** sum4(dst, a, b, c, e, n, scale): dst = ((a + b) + (c + e)) * scale */
  sum4: func({ params: { dst: i32, a: i32, b: i32, c: i32, e: i32, n: i32, scale: f32 }, locals: { i: i32, s: v128 } }, (w, v) => {
    splat(w, v.scale, v.s);
    forEachVector(w, v.i, v.n, () => {
      address(w, v.dst, v.i);
      load(w, v.a, v.i); load(w, v.b, v.i); w.f32x4_add();
      load(w, v.c, v.i); load(w, v.e, v.i); w.f32x4_add();
      w.f32x4_add().local_get(v.s).f32x4_mul().v128_store();
    });
  }),

  /** acc4(acc, a, b, c, e, n): acc += (a + b) + (c + e) */
  acc4: func({ params: { acc: i32, a: i32, b: i32, c: i32, e: i32, n: i32 }, locals: { i: i32 } }, (w, v) => {
    forEachVector(w, v.i, v.n, () => {
      address(w, v.acc, v.i);
      load(w, v.acc, v.i);
      load(w, v.a, v.i); load(w, v.b, v.i); w.f32x4_add();
      load(w, v.c, v.i); load(w, v.e, v.i); w.f32x4_add();
      w.f32x4_add().f32x4_add().v128_store();
    });
  }),

  /** acc1(acc, a, n): acc += a */
  acc1: func({ params: { acc: i32, a: i32, n: i32 }, locals: { i: i32 } }, (w, v) => {
    forEachVector(w, v.i, v.n, () => {
      address(w, v.acc, v.i);
      load(w, v.acc, v.i); load(w, v.a, v.i);
      w.f32x4_add().v128_store();
    });
  }),

  /** axpy(dst, t, acc, n, s): dst = t + acc * s */
  axpy: func({ params: { dst: i32, t: i32, acc: i32, n: i32, s: f32 }, locals: { i: i32, vs: v128 } }, (w, v) => {
    splat(w, v.s, v.vs);
    forEachVector(w, v.i, v.n, () => {
      address(w, v.dst, v.i);
      load(w, v.t, v.i);
      load(w, v.acc, v.i); w.local_get(v.vs).f32x4_mul();
      w.f32x4_add().v128_store();
    });
  }),

  /**
   * logits4(a, b, c, e, n, wa, wb, wc, we, res): q = wa a + wb b + wc c + we e, then the four dot
   * products q . a, q . b, q . c, q . e as float32 at res, res + 4, res + 8, res + 12.
   */
  logits4: func(
    {
      params: { a: i32, b: i32, c: i32, e: i32, n: i32, wa: f32, wb: f32, wc: f32, we: f32, res: i32 },
      locals: {
        i: i32,
        va: v128, vb: v128, vc: v128, ve: v128, q: v128,
        s0: v128, s1: v128, s2: v128, s3: v128,
        ra: v128, rb: v128, rc: v128, re: v128
      }
    },
    (w, v) => {
      splat(w, v.wa, v.va); splat(w, v.wb, v.vb); splat(w, v.wc, v.vc); splat(w, v.we, v.ve);
      const rows: Array<[Local, Local, Local]> = [[v.a, v.ra, v.s0], [v.b, v.rb, v.s1], [v.c, v.rc, v.s2], [v.e, v.re, v.s3]];
      forEachVector(w, v.i, v.n, () => {
        for (const [base, row] of rows) load(w, base, v.i).local_set(row);
        // q = va ra + vb rb + vc rc + ve re
        w.local_get(v.va).local_get(v.ra).f32x4_mul();
        w.local_get(v.vb).local_get(v.rb).f32x4_mul().f32x4_add();
        w.local_get(v.vc).local_get(v.rc).f32x4_mul().f32x4_add();
        w.local_get(v.ve).local_get(v.re).f32x4_mul().f32x4_add();
        w.local_set(v.q);
        // s += q * row, for each of the four rows
        for (const [, row, s] of rows) w.local_get(s).local_get(v.q).local_get(row).f32x4_mul().f32x4_add().local_set(s);
      });
      rows.forEach(([, , s], k) => {
        w.local_get(v.res);
        lanesSum(w, s);
        w.f32_store(4 * k);
      });
    }
  ),

  /**
   * dots(key, units, count, n, res): res[j] = key . units[j] (float32) for the `count` rows of
   * units (n bytes each, back to back), at res + 4 j.
   */
  dots: func(
    { params: { key: i32, units: i32, count: i32, n: i32, res: i32 }, locals: { i: i32, j: i32, u: i32, r: i32, s: v128 } },
    (w, v) => rowDots(w, { ...v, rows: v.units, left: v.key })
  ),

  /** norms(rows, count, n, res): res[j] = rows[j] . rows[j] (float32) for count rows of n bytes. */
  norms: func(
    { params: { rows: i32, count: i32, n: i32, res: i32 }, locals: { i: i32, j: i32, u: i32, r: i32, s: v128 } },
    (w, v) => rowDots(w, { ...v, left: null })
  ),

  /**
   * finite(ptr, n) -> 1 when the n bytes at ptr hold no NaN or ±Infinity, else 0: x * 0 is 0 for
   * finite x and NaN otherwise, so the running sum stays equal to itself exactly when all are.
   */
  finite: func({ params: { ptr: i32, n: i32 }, locals: { i: i32, acc: v128, zero: v128 }, result: i32 }, (w, v) => {
    w.f32_const(0).f32x4_splat().local_set(v.zero).local_get(v.zero).local_set(v.acc);
    forEachVector(w, v.i, v.n, () => {
      w.local_get(v.acc);
      load(w, v.ptr, v.i); w.local_get(v.zero).f32x4_mul();
      w.f32x4_add().local_set(v.acc);
    });
    w.local_get(v.acc).local_get(v.acc).f32x4_eq().i32x4_all_true();
  }),

  /** wsum4(dst, a, b, c, e, n, wa, wb, wc, we): dst = wa a + wb b + wc c + we e */
  wsum4: func(
    {
      params: { dst: i32, a: i32, b: i32, c: i32, e: i32, n: i32, wa: f32, wb: f32, wc: f32, we: f32 },
      locals: { i: i32, va: v128, vb: v128, vc: v128, ve: v128 }
    },
    (w, v) => {
      splat(w, v.wa, v.va); splat(w, v.wb, v.vb); splat(w, v.wc, v.vc); splat(w, v.we, v.ve);
      forEachVector(w, v.i, v.n, () => {
        address(w, v.dst, v.i);
        w.local_get(v.va); load(w, v.a, v.i); w.f32x4_mul();
        w.local_get(v.vb); load(w, v.b, v.i); w.f32x4_mul().f32x4_add();
        w.local_get(v.vc); load(w, v.c, v.i); w.f32x4_mul().f32x4_add();
        w.local_get(v.ve); load(w, v.e, v.i); w.f32x4_mul().f32x4_add();
        w.v128_store();
      });
    }
  )
} satisfies Record<string, Func>;

/** The kernels' binary module (about 1.3 KB): every kernel exported by name, plus "memory". */
export function simdModuleBytes(): Uint8Array {
  return assemble(KERNELS);
}
