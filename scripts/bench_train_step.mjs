// One PngGrounder training step (forward + backward through the frozen UNet, EIPA, MLMA, decoder)
// at 256×256, batch 1, on wasm: seconds per step, peak memory, achieved GFLOP/s (counted from the
// kernels that ran) against wasm's own conv2d peak measured in the same run.
//   npm run bench:train [-- --width-scale 0.5] [--size 256] [--no-checkpointing] [--no-offload]
// It runs once per compute path of the wasm backend (its own kernels; @png/native-kernels on 1
// thread and on every core, where built: see bench_util's computePaths), each in a child process,
// and prints the step time per path side by side.
// Two memory savers, both on by default:
// - gradient checkpointing of the UNet's blocks: each keeps only its inputs for the gradient and
//   runs again in the backward (those FLOPs are counted too: GFLOP/s measures the kernels);
// - sequential offload: the blocks' frozen weights live in host memory and are uploaded to the
//   wasm heap only while a block runs (forward, and recompute + backward); needs checkpointing.
// The frozen VAE and text encoder are freed once the image and narrative are encoded.
// With both, SD v1.5 at full width trains within wasm32's 4 GiB heap. What made it fit: the
// low-resolution layers stream their weights (XNNPACK packs no copy of them, in the forward or
// the backward), and wasm's Identity shares storage, so what the tape saves is held once.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, setBackend, wasmComputePath } from '@png/core';
import {
  AutoencoderKL,
  CLIPTextModel,
  CLIPTokenizer,
  CLIP_VIT_L14_TEXT_CONFIG,
  DiffusionBackbone,
  SD15_UNET_CONFIG,
  SD15_VAE_CONFIG,
  UNet2DConditionModel,
} from '@png/diffusion-backbone';
import { PngGrounder } from '@png/pipeline';
import { Trainer } from '@png/training';
import { convPeakGflops, gb, reportFigures, runPerComputePath, withPeakRss } from './bench_util.mjs';
import { kernelFlops } from './kernel_flops.mjs';

const { values: args } = parseArgs({
  options: {
    'width-scale': { type: 'string', default: '1' },
    size: { type: 'string', default: '256' },
    checkpointing: { type: 'boolean', default: true },
    offload: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const scale = Number(args['width-scale']);
const size = Number(args.size);
const { checkpointing, offload } = args;
if (offload && !checkpointing)
  throw new Error("--offload needs checkpointing (drop --no-checkpointing): without it the gradient tape holds every block's weights, which offloading evicts");

if (!process.env.PNG_BENCH_PATH) {
  await runPerComputePath(fileURLToPath(import.meta.url), process.argv.slice(2));
  process.exit(0);
}

await setBackend('wasm');
console.log(`compute path: ${wasmComputePath()}`);
const peak = await convPeakGflops();
console.log(`conv2d peak on this path: ${peak.toFixed(1)} GFLOP/s`);

const unetConfig = { ...SD15_UNET_CONFIG, block_out_channels: SD15_UNET_CONFIG.block_out_channels.map((c) => Math.round(c * scale)) };
const unet = UNet2DConditionModel.create(unetConfig, { seed: 0 });
if (offload) await unet.enableSequentialOffload(); // before the other components take heap
const vae = AutoencoderKL.create(SD15_VAE_CONFIG, { parts: 'encoder', seed: 1 });
const textEncoder = CLIPTextModel.fromScope(WeightScope.fresh({ seed: 2, trainable: false }), CLIP_VIT_L14_TEXT_CONFIG);
// A byte-level tokenizer is enough to make phrase ids; the benchmark measures compute, not text.
const tokenizer = await CLIPTokenizer.fromPretrained(new URL('../../shared/fixtures/tiny-sd/tokenizer', import.meta.url).pathname);
const backbone = DiffusionBackbone.fromComponents({ unet, vae, textEncoder, tokenizer });
const grounder = PngGrounder.create(backbone, {}, { seed: 3 });
if (checkpointing) grounder.enableGradientCheckpointing();
console.log(
  `UNet block_out_channels ${unetConfig.block_out_channels} (${(scale * 100).toFixed(0)}% of SD v1.5 width): ${unet.numParameters().toLocaleString()} frozen UNet parameters; ${grounder.numTrainableParameters().toLocaleString()} trained`,
);
console.log(`gradient checkpointing: ${checkpointing ? 'on' : 'off'}; sequential offload of the UNet blocks: ${offload ? 'on' : 'off'}`);

const narratives = [
  {
    caption: 'two dogs on the grass and a person near the water',
    phrases: [
      [0, 8],
      [12, 21],
      [26, 34],
      [40, 49],
    ],
  },
];
const images = tf.randomUniform([1, size, size, 3], -1, 1, 'float32', 4);
const targets = tf.cast(tf.greater(tf.randomUniform([1, size, size, 4], 0, 1, 'float32', 5), 0.5), 'float32');
const phrases = grounder.encodePhrases(narratives);
const t0 = performance.now();
const latents = backbone.encodeImages(images);
await latents.data();
console.log(`VAE encode (once per image, frozen): ${((performance.now() - t0) / 1000).toFixed(2)} s`);
// a trainer encodes each image and narrative once: the frozen encoders take no part in the step
vae.dispose();
textEncoder.dispose();

const trainer = new Trainer({ variables: grounder.namedVariables(), lossFn: () => grounder.loss(latents, phrases, targets), optimizer: { lr: 1e-4 } });
console.log(`heap before the first step: ${gb(tf.backend().wasm.HEAPU8.length)}`);
await trainer.step(undefined); // warm-up: XNNPACK operators, optimizer slots
console.log(`heap after the first step: ${gb(tf.backend().wasm.HEAPU8.length)}`);
// the FLOPs of one forward + backward, counted from the kernels that ran
const profile = await tf.profile(() => {
  const { value, grads } = tf.variableGrads(() => grounder.loss(latents, phrases, targets), Object.values(grounder.namedVariables()));
  return [value, ...Object.values(grads)];
});
const flops = kernelFlops(profile);
const step = await withPeakRss(async () => {
  const t = performance.now();
  await trainer.step(undefined);
  return (performance.now() - t) / 1000;
});
const rate = flops / 1e9 / step.result;
console.log(
  `training step ${size}×${size}, batch 1: ${step.result.toFixed(2)} s, ${(flops / 1e9).toFixed(1)} GFLOP (conv + matMul kernels), ${rate.toFixed(1)} GFLOP/s = ${(rate / peak).toFixed(2)} of conv peak; peak RSS ${gb(step.peakRss)}, wasm heap ${gb(tf.backend().wasm.HEAPU8.length)}`,
);
reportFigures({ 'training step': step.result });
trainer.dispose();
tf.dispose([images, targets, phrases, latents]);
grounder.dispose();
backbone.dispose();
