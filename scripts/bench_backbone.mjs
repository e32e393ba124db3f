// Benchmark of the frozen backbone on the wasm backend (issue: backbone).
//   npm run bench:backbone
// Builds the real SD v1.5 UNet config with random weights, saves it as a 3.4 GB safetensors file,
// times loading it against reading its bytes, times one UNet forward at 256×256 (32×32 latent) and
// the CLIP ViT-L/14 text encoder, and prints achieved GFLOP/s next to wasm's own conv2d GFLOP/s.
//
// Load vs read: both warm. The read goes from the page cache into one reused buffer; the load
// reads each tensor straight into its wasm heap storage, in this process whose heap the random
// init already grew (and whose pages it touched). A fresh process pays once, on top, for touching
// its heap's pages for the first time: that cold load is timed too, in a child process.
//
// The UNet forward and the text encoder run once per compute path of the wasm backend (its own
// kernels; @png/native-kernels on 1 thread and on every core, where built: see bench_util's
// computePaths), each in a child process that loads the saved UNet; their times are printed side
// by side.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, setBackend, wasmComputePath } from '@png/core';
import { UNet2DConditionModel, SD15_UNET_CONFIG, CLIPTextModel, CLIP_VIT_L14_TEXT_CONFIG } from '@png/diffusion-backbone';
import { convPeakGflops, gb, reportFigures, runPerComputePath, timeIt, withPeakRss } from './bench_util.mjs';

await setBackend('wasm');
console.log(`backend: ${tf.getBackend()}, ${wasmComputePath()}  (node ${process.version}, ${os.cpus().length} cores)`);

const childDir = process.env.PNG_BENCH_UNET_DIR;
if (!childDir) await loadFigures();
else await computeFigures(childDir);

/** Writes the SD v1.5 UNet with random weights, times reading and loading it, then runs computeFigures per compute path. */
async function loadFigures() {
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

  const readSeconds = await timeIt(
    async () => {
      const fd = fs.openSync(file, 'r');
      const chunk = Buffer.allocUnsafe(64 << 20);
      for (let pos = 0; pos < bytes; pos += chunk.length) fs.readSync(fd, chunk, 0, chunk.length, pos);
      fs.closeSync(fd);
    },
    { runs: 2 },
  );
  let unet;
  const load = await withPeakRss(async () => {
    const t = performance.now();
    unet = await UNet2DConditionModel.fromPretrained(dir);
    return (performance.now() - t) / 1000;
  });
  const coldSeconds = Number(
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      import { setBackend } from '@png/core';
      import { UNet2DConditionModel } from '@png/diffusion-backbone';
      await setBackend('wasm');
      const t = performance.now();
      await UNet2DConditionModel.fromPretrained(${JSON.stringify(dir)});
      console.log((performance.now() - t) / 1000);`,
      ],
      { encoding: 'utf8' },
    )
      .trim()
      .split('\n')
      .at(-1),
  );
  console.log(`read file bytes: ${readSeconds.toFixed(2)} s (${(bytes / readSeconds / 2 ** 30).toFixed(2)} GiB/s)`);
  console.log(
    `load (fromPretrained): ${load.result.toFixed(2)} s = ${(load.result / readSeconds).toFixed(2)}× the read time (target ≤ 2×); peak RSS ${gb(load.peakRss)}`,
  );
  console.log(`load in a fresh process (its wasm heap's pages touched for the first time): ${coldSeconds.toFixed(2)} s`);
  unet.dispose();
  try {
    await runPerComputePath(fileURLToPath(import.meta.url), [], { PNG_BENCH_UNET_DIR: dir });
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
}

/** The UNet forward and the text encoder on this process's compute path, the UNet loaded from `dir`. */
async function computeFigures(dir) {
  const peak = await convPeakGflops();
  console.log(`conv2d peak on this path (3×3, SD widths): ${peak.toFixed(1)} GFLOP/s`);
  // --- UNet forward at 256×256. The 3.2 GiB of weights and what a forward allocates beside them do
  // not fit wasm32's 4 GiB heap together (measured: a resident forward aborts), so the UNet runs with
  // its blocks offloaded to host memory, each uploaded (a copy) while it runs. The low-resolution
  // layers stream their weights (never packed); the 32×32 ones are transposed and packed per call.
  const unet = await UNet2DConditionModel.fromPretrained(dir);
  const disableOffload = await unet.enableSequentialOffload();
  const unetGflop = 180.2; // sd15_costs.json: UNet at latent 1×4×32×32 (256²), MACs × 2
  const x = tf.randomNormal([1, 32, 32, 4]);
  const ctx = tf.randomNormal([1, 77, 768]);
  const fwd = await withPeakRss(() =>
    timeIt(
      async () => {
        const { sample } = unet.forward(x, 1, ctx);
        await sample.data();
        sample.dispose();
      },
      { runs: 2 },
    ),
  );
  const unetRate = unetGflop / fwd.result;
  console.log(
    `UNet forward 256×256 (sequential offload): ${fwd.result.toFixed(2)} s, ${unetRate.toFixed(1)} GFLOP/s = ${(unetRate / peak).toFixed(2)} of conv peak (target ≥ 0.6); peak RSS ${gb(fwd.peakRss)}`,
  );
  tf.dispose([x, ctx]);
  disableOffload();
  unet.dispose();

  // --- CLIP ViT-L/14 text encoder
  const clipGflop = 13.3; // sd15_costs.json
  const clip = CLIPTextModel.fromScope(WeightScope.fresh({ seed: 0, trainable: false }), CLIP_VIT_L14_TEXT_CONFIG);
  const ids = tf.tensor2d(
    Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 20 ? 320 + i : 49407)),
    [1, 77],
    'int32',
  );
  const clipSeconds = await timeIt(async () => {
    const out = clip.forward(ids);
    await out.lastHiddenState.data();
    tf.dispose(out);
  });
  const clipRate = clipGflop / clipSeconds;
  console.log(`CLIP-L text encoder (77 tokens): ${clipSeconds.toFixed(3)} s, ${clipRate.toFixed(1)} GFLOP/s = ${(clipRate / peak).toFixed(2)} of conv peak`);
  ids.dispose();
  clip.dispose();
  reportFigures({ 'UNet forward 256×256': fwd.result, 'CLIP-L text encoder': clipSeconds });
}
