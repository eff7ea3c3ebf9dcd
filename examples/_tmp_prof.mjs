import { getLlama } from "node-llama-cpp";
import { loadNativeBinding, decodeImage } from "@leanvision/llama-adapter";
const S = process.env.HOME + "/.cache/leanvision/gguf/small-6aaa8325ce773c98";
const llama = await getLlama({ gpu: false, build: "never" });
const b = loadNativeBinding();
const flash = process.env.FA !== "0";
const h = b.createVisionContext(S + "/mmproj.gguf", { nThreads: 1, useGpu: false, flashAttention: flash });
const rgb = await decodeImage("/tmp/fastlab/test-336.png");
const n = Number(process.env.N ?? 6);
const cpu = [];
for (let i = 0; i < n; i++) { const c = process.cpuUsage(); await b.encodeStock(h, rgb.data, rgb.width, rgb.height); const u = process.cpuUsage(c); cpu.push((u.user + u.system) / 1000); }
console.log(JSON.stringify({ bins: llama.buildType, flash, cpuMs: cpu.map(Math.round) }));
b.freeVisionContext(h);
