// The perfect-mask ceiling of a mask stride: AR of the ground truth itself, seen through a mask
// head at `stride` pixels per mask pixel. Per phrase the best such head outputs the fraction of
// each stride×stride cell the phrase covers (logit = fraction − ½); it goes the model's way back
// to the image (bilinear to the canvas, unletterbox, > 0) and is scored like a prediction.
//   node scripts/mask_stride_ceiling.mjs [--sizes 64,96,128] [--strides 8,4,2,1] [--val 60] [--seed 0]
// Synthesises the val split at each size (png synth's generator) in a temporary folder.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { generateSyntheticBenchmark, letterbox, masksToTarget, unletterbox } from '@png/png-data';
import { PngEvaluator, summarizeMetrics } from '@png/png-metrics';
import { readGroundedSamples } from '@png/pipeline';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64,96,128' },
    strides: { type: 'string', default: '8,4,2,1' },
    val: { type: 'string', default: '60' },
    seed: { type: 'string', default: '0' },
  },
});
const sizes = args.sizes.split(',').map(Number);
const strides = args.strides.split(',').map(Number);
await setBackend('cpu');

const pct = (x) => (100 * x).toFixed(1).padStart(5);
console.log('size  stride  mask    overall  things  stuff  singulars  plurals');
for (const size of sizes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mask-ceiling-'));
  try {
    await generateSyntheticBenchmark(dir, { seed: Number(args.seed), train: 0, val: Number(args.val), size: [size, size] });
    const { samples } = await readGroundedSamples(dir, 'val2017');
    for (const stride of strides) {
      if (size % stride !== 0) continue;
      const evaluator = new PngEvaluator();
      for (const sample of samples) {
        const { tensor, transform } = letterbox(sample.image, size);
        tensor.dispose();
        const logits = tf.tidy(() => {
          const target = masksToTarget(
            sample.phrases.map((p) => p.mask),
            transform,
          ); // [1, S, S, P]
          return tf.sub(tf.avgPool(target, stride, stride, 'valid'), 0.5); // [1, S/stride, S/stride, P]
        });
        const predicted = await unletterbox(logits, transform);
        logits.dispose();
        evaluator.process(
          {
            label: `image ${sample.imageId}`,
            height: sample.image.height,
            width: sample.image.width,
            phrases: sample.phrases.map((p) => ({ label: p.text, isThing: p.isThing, isPlural: p.isPlural, mask: p.mask })),
          },
          predicted,
        );
      }
      const s = summarizeMetrics(evaluator.evaluate());
      const side = size / stride;
      console.log(
        `${String(size).padStart(4)}  ${String(stride).padStart(6)}  ${`${side}×${side}`.padEnd(7)} ${pct(s.overall)}   ${pct(s.things)}  ${pct(s.stuff)}  ${pct(s.singulars)}      ${pct(s.plurals)}`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
