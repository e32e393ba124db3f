// One PngGrounder training step (forward + backward through the frozen UNet, EIPA, MLMA, decoder)
// at 256×256, batch 1, on wasm: seconds per step, peak memory, achieved GFLOP/s (counted from the
// kernels that ran) against wasm's own conv2d peak measured in the same run.
//   npm run bench:train [-- --width-scale 0.5]
// SD v1.5 at full width (--width-scale 1) does not fit wasm32's 4 GiB heap for training: its 3.2 GiB
// of weights, XNNPACK's packed copy of each and the saved activations exceed it (sequential offload
// serves inference only). The default measures the SD v1.5 architecture at half width.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, setBackend } from '@png/core';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, CLIP_VIT_L14_TEXT_CONFIG, DiffusionBackbone, SD15_UNET_CONFIG, SD15_VAE_CONFIG, UNet2DConditionModel } from '@png/diffusion-backbone';
import { PngGrounder, Trainer } from '@png/pipeline';
import { convPeakGflops, gb, withPeakRss } from './bench_util.mjs';
import { kernelFlops } from './kernel_flops.mjs';

const { values: args } = parseArgs({ options: { 'width-scale': { type: 'string', default: '0.5' }, size: { type: 'string', default: '256' } } });
const scale = Number(args['width-scale']);
const size = Number(args.size);

await setBackend('wasm');
const peak = await convPeakGflops();
console.log(`wasm conv2d peak: ${peak.toFixed(1)} GFLOP/s`);

const unetConfig = { ...SD15_UNET_CONFIG, block_out_channels: SD15_UNET_CONFIG.block_out_channels.map((c) => Math.round(c * scale)) };
const unet = UNet2DConditionModel.create(unetConfig, { seed: 0 });
const vae = AutoencoderKL.create(SD15_VAE_CONFIG, { parts: 'encoder', seed: 1 });
const textEncoder = CLIPTextModel.fromScope(WeightScope.fresh({ seed: 2, trainable: false }), CLIP_VIT_L14_TEXT_CONFIG);
// A byte-level tokenizer is enough to make phrase ids; the benchmark measures compute, not text.
const tokenizer = await CLIPTokenizer.fromPretrained(new URL('../../shared/fixtures/tiny-sd/tokenizer', import.meta.url).pathname);
const backbone = DiffusionBackbone.fromComponents({ unet, vae, textEncoder, tokenizer });
const grounder = PngGrounder.create(backbone, {}, { seed: 3 });
console.log(`UNet block_out_channels ${unetConfig.block_out_channels} (${(scale * 100).toFixed(0)}% of SD v1.5 width): ${unet.numParameters().toLocaleString()} frozen UNet parameters; ${grounder.numTrainableParameters().toLocaleString()} trained`);

const narratives = [{ caption: 'two dogs on the grass and a person near the water', phrases: [[0, 8], [12, 21], [26, 34], [40, 49]] }];
const images = tf.randomUniform([1, size, size, 3], -1, 1, 'float32', 4);
const targets = tf.cast(tf.greater(tf.randomUniform([1, size, size, 4], 0, 1, 'float32', 5), 0.5), 'float32');
const phrases = grounder.encodePhrases(narratives);
let t0 = performance.now();
const latents = backbone.encodeImages(images);
await latents.data();
console.log(`VAE encode (once per image, frozen): ${((performance.now() - t0) / 1000).toFixed(2)} s`);

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
console.log(`training step ${size}×${size}, batch 1: ${step.result.toFixed(2)} s, ${(flops / 1e9).toFixed(1)} GFLOP (conv + matMul kernels), ${rate.toFixed(1)} GFLOP/s = ${(rate / peak).toFixed(2)} of conv peak; peak RSS ${gb(step.peakRss)}`);
trainer.dispose();
tf.dispose([images, targets, phrases, latents]);
grounder.dispose();
backbone.dispose();
