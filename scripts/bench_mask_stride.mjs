// What a finer mask stride costs: one PngGrounder training step (forward + backward + AdamW) on the
// embedded tiny SD with examples/configs/png_tiny.json, batch 8 (--batch), 4 phrases per narrative, per
// image size and mask_stride (default: the finest UNet level, stride 4; 2 and 1 add MLMA skip
// levels fed by the frozen VAE encoder). Also: the frozen encode (once per image: VAE + taps), the
// bytes of the skip maps a trainer caches per image, and the step's conv + matMul GFLOP.
//   node scripts/bench_mask_stride.mjs [--sizes 64,96,128] [--strides default,2,1] [--batch 8] [--runs 3] [--backend wasm] [--checkpointing]
// --checkpointing recomputes the UNet's blocks in the backward (PngGrounder.enableGradientCheckpointing):
// at 128×128, batch 8, the default model's step does not fit wasm32's 4 GiB heap without it.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { PngGrounder } from '@png/pipeline';
import { Trainer } from '@png/training';
import { timeIt } from './bench_util.mjs';
import { kernelFlops } from './kernel_flops.mjs';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64,96,128' },
    strides: { type: 'string', default: 'default,2,1' },
    batch: { type: 'string', default: '8' },
    runs: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    checkpointing: { type: 'boolean', default: false },
  },
});
const sizes = args.sizes.split(',').map(Number);
const strides = args.strides.split(',').map((s) => (s === 'default' ? null : Number(s)));
const runs = Number(args.runs);
const batch = Number(args.batch);

await setBackend(args.backend);
const backbone = await DiffusionBackbone.fromPretrained(new URL('../packages/diffusion-backbone/models/png-tiny-sd', import.meta.url).pathname);
const config = JSON.parse(fs.readFileSync(new URL('../examples/configs/png_tiny.json', import.meta.url), 'utf8'));
const caption = 'a red circle and two blue squares on the grass under the sky';
const narratives = Array.from({ length: batch }, () => ({
  caption,
  phrases: [
    [0, 12],
    [17, 32],
    [36, 45],
    [52, 59],
  ],
}));

console.log(
  `backend ${args.backend}, batch ${batch}, gradient checkpointing ${args.checkpointing ? 'on' : 'off'}, ${narratives[0].phrases.length} phrases per narrative, median of ${runs} steps after 1 warm-up; CPU seconds of this process (wall seconds depend on the machine's load)`,
);
console.log(
  'size  mask_stride  mask     step CPU s  ×default  wall s  GFLOP/step  encode (s)  skip maps/image  trainable params  wasm heap (grows only: high-water mark so far)',
);
for (const size of sizes) {
  let baseline;
  for (const maskStride of strides) {
    const grounder = PngGrounder.create(backbone, { ...config, mask_stride: maskStride }, { seed: 0 });
    if (args.checkpointing) grounder.enableGradientCheckpointing();
    const images = tf.randomUniform([batch, size, size, 3], -1, 1, 'float32', 1);
    const targets = tf.cast(tf.greater(tf.randomUniform([batch, size, size, 4], 0, 1, 'float32', 2), 0.5), 'float32');
    const phrases = grounder.encodePhrases(narratives);
    const encodeSeconds = await timeIt(async () => {
      const e = grounder.encodeImages(images);
      await e.latents.data();
      tf.dispose(e);
    });
    const { latents, skips } = grounder.encodeImages(images);
    const skipBytes = skips.reduce((n, s) => n + (4 * s.tensor.size) / batch, 0);
    const loss = () => grounder.loss(latents, phrases, targets, skips);
    const trainer = new Trainer({ variables: grounder.namedVariables(), lossFn: loss, optimizer: { lr: 1e-4 } });
    // FLOPs of one image's forward + backward × batch (they are linear in it; profiling the whole
    // batch at 128×128 exhausts tf.profile's bookkeeping)
    const first = (t) => tf.slice(t, 0, 1);
    const one = {
      latents: first(latents),
      phrases: { tensor: first(phrases.tensor), mask: first(phrases.mask) },
      targets: first(targets),
      skips: skips.map((s) => ({ ...s, tensor: first(s.tensor) })),
    };
    const profile = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(
        () => grounder.loss(one.latents, one.phrases, one.targets, one.skips),
        Object.values(grounder.namedVariables()),
      );
      return [value, ...Object.values(grads)];
    });
    tf.dispose(one);
    const gflop = (batch * kernelFlops(profile)) / 1e9;
    // process CPU seconds (wasm runs on this one thread) are what a step costs on a shared machine; wall seconds beside them
    const cpuTimes = [];
    const step = await timeIt(
      async () => {
        const c0 = process.cpuUsage();
        await trainer.step(undefined);
        const c = process.cpuUsage(c0);
        cpuTimes.push((c.user + c.system) / 1e6);
      },
      { runs },
    );
    const cpu = cpuTimes.slice(1).sort((a, b) => a - b)[runs >> 1]; // median after the warm-up
    baseline ??= cpu;
    const side = size / grounder.maskStride;
    console.log(
      `${String(size).padStart(4)}  ${String(maskStride ?? `default (${grounder.maskStride})`).padEnd(11)}  ${`${side}×${side}`.padEnd(7)}  ${cpu.toFixed(2).padStart(10)}  ${(cpu / baseline).toFixed(2).padStart(8)}  ${step.toFixed(2).padStart(6)}  ${gflop.toFixed(1).padStart(10)}  ${encodeSeconds.toFixed(3).padStart(10)}  ${`${(skipBytes / 1024).toFixed(0)} KiB`.padStart(15)}  ${grounder.numTrainableParameters().toLocaleString().padStart(16)}  ${args.backend === 'wasm' ? `${(tf.backend().wasm.HEAPU8.length / 2 ** 30).toFixed(2)} GiB` : '-'}`,
    );
    trainer.dispose();
    tf.dispose([images, targets, phrases, latents, skips]);
    grounder.dispose();
  }
}
backbone.dispose();
