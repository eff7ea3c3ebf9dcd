// The built-in reducers. A new reducer is one file in this folder plus one line here.
import { registerReducer } from "../registry.js";
import { none } from "./none.js";
import { pool } from "./pool.js";
import { regionPack } from "./regionpack.js";
import { tokenPacker } from "./tokenpacker.js";
import { visionZip, visionZipAdaptive } from "./visionzip.js";

export const builtinReducers = [none, visionZip, visionZipAdaptive, pool, regionPack, tokenPacker].map((d) => registerReducer(d as never));
export { ADAPTIVE_DEFAULT_MAX, ADAPTIVE_DEFAULT_MIN } from "./visionzip.js";
