import { getLlama } from "node-llama-cpp";
import sharp from "sharp";
import { loadNativeBinding, decodeImage } from "@leanvision/llama-adapter";
const S = process.env.HOME + "/.cache/leanvision/gguf/tiny-7e78f4bd8e0de5c2";
const llama = await getLlama({ gpu: false, build: "never" });
const b = loadNativeBinding();
const h = b.createVisionContext(S + "/mmproj.gguf", { nThreads: 1, useGpu: false });
const src = "/tmp/fastlab/test-336.png";
const big = await sharp(src).resize(2000, 1500, { fit: "fill" }).raw().toBuffer({ resolveWithObject: true });
const small = await decodeImage(src);
const bigRgb = { data: new Uint8Array(big.data.buffer, big.data.byteOffset, big.data.length), width: 2000, height: 1500 };
const runs = Number(process.env.N ?? 7);
const t = async (im) => { const c = process.cpuUsage(); await b.encodeStock(h, im.data, im.width, im.height); const u = process.cpuUsage(c); return (u.user + u.system) / 1000; };
await t(small); await t(bigRgb);
const d = [], s = [], g = [];
for (let i = 0; i < runs; i++) { const a = await t(small); const bb = await t(bigRgb); s.push(a); g.push(bb); d.push(bb - a); }
const med = (x) => x.slice().sort((p, q) => p - q)[x.length >> 1];
console.log(JSON.stringify({ backend: h.backend, small336: med(s).toFixed(1), big2000x1500: med(g).toFixed(1), preprocessExtraCpuMs: med(d).toFixed(1) }));
b.freeVisionContext(h);
