// Benchmark of the frozen backbone on the wasm backend (issue: backbone).
//   npm run bench:backbone
// Builds the real SD v1.5 UNet config with random weights, saves it as a 3.4 GB safetensors file,
// times loading it against reading its bytes, times one UNet forward at 256×256 (32×32 latent) and
// the CLIP ViT-L/14 text encoder, and prints achieved GFLOP/s next to wasm's own conv2d GFLOP/s.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { UNet2DConditionModel, SD15_UNET_CONFIG } from '@png/diffusion-backbone';
import { convPeakGflops, gb, timeIt, withPeakRss } from './bench_util.mjs';

await setBackend('wasm');
console.log(`backend: ${tf.getBackend()}  (node ${process.version}, ${os.cpus().length} cores)`);
const peak = await convPeakGflops();
console.log(`wasm conv2d peak (3×3, SD widths): ${peak.toFixed(1)} GFLOP/s`);

// --- a multi-GB checkpoint: write, read raw, load
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sd15-unet-'));
let t0 = performance.now();
const random = UNet2DConditionModel.create(SD15_UNET_CONFIG, { seed: 0 });
console.log(`SD v1.5 UNet: ${random.numParameters().toLocaleString()} parameters, random init ${((performance.now() - t0) / 1000).toFixed(1)} s`);
t0 = performance.now();
await random.save(dir);
random.dispose();
const file = path.join(dir, 'diffusion_pytorch_model.safetensors');
const bytes = fs.statSync(file).size;
console.log(`saved ${gb(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const readSeconds = await timeIt(async () => {
  const fd = fs.openSync(file, 'r');
  const chunk = Buffer.allocUnsafe(64 << 20);
  for (let pos = 0; pos < bytes; pos += chunk.length) fs.readSync(fd, chunk, 0, chunk.length, pos);
  fs.closeSync(fd);
}, { runs: 2 });
let unet;
const load = await withPeakRss(async () => {
  const t = performance.now();
  unet = await UNet2DConditionModel.fromPretrained(dir);
  return (performance.now() - t) / 1000;
});
console.log(`read file bytes: ${readSeconds.toFixed(2)} s (${(bytes / readSeconds / 2 ** 30).toFixed(2)} GiB/s)`);
console.log(`load (fromPretrained): ${load.result.toFixed(2)} s = ${(load.result / readSeconds).toFixed(2)}× the read time (target ≤ 2×); peak RSS ${gb(load.peakRss)}`);

// --- UNet forward at 256×256. wasm32's heap is 4 GiB and XNNPACK packs a second copy of every
// weight it uses, so the 3.2 GiB UNet runs with its blocks offloaded to host memory.
const disableOffload = await unet.enableSequentialOffload();
const unetGflop = 180.2; // sd15_costs.json: UNet at latent 1×4×32×32 (256²), MACs × 2
const x = tf.randomNormal([1, 32, 32, 4]);
const ctx = tf.randomNormal([1, 77, 768]);
const fwd = await withPeakRss(() =>
  timeIt(async () => {
    const { sample } = unet.forward(x, 1, ctx);
    await sample.data();
    sample.dispose();
  }, { runs: 2 }),
);
const unetRate = unetGflop / fwd.result;
console.log(`UNet forward 256×256 (sequential offload): ${fwd.result.toFixed(2)} s, ${unetRate.toFixed(1)} GFLOP/s = ${(unetRate / peak).toFixed(2)} of conv peak (target ≥ 0.6); peak RSS ${gb(fwd.peakRss)}`);
tf.dispose([x, ctx]);
disableOffload();
unet.dispose();
fs.rmSync(dir, { recursive: true });

