// Benchmark of @png/png-metrics (run `npx tsup` first, then `npm run bench`).
// 1. AR of 1,000,000 phrases (target: < 1 s on one core), and a full evaluate() of 1,000,000 phrases.
// 2. Bootstrap intervals: 300 and 10,000 images × 5 phrases × 1000 resamples.
// 3. PngEvaluator throughput on 512×512 masks, for binary, soft and COCO-RLE predictions.
import { mulberry32 } from '@png/node-utils';
import { PngEvaluator, averageRecall, encodeRle } from '../dist/index.js';

function time(fn) {
  const start = performance.now();
  const result = fn();
  return { ms: performance.now() - start, result };
}

const random = mulberry32(2021);
const PHRASES = 1_000_000;
const ious = new Float64Array(PHRASES);
for (let k = 0; k < PHRASES; k++) {
  const u = random();
  ious[k] = u < 0.01 ? NaN : u < 0.05 ? 0 : u < 0.08 ? 1 : Math.fround(random());
}
averageRecall(ious.subarray(0, 1000)); // warm-up
const ar = time(() => averageRecall(ious));
console.log(`averageRecall, ${PHRASES.toLocaleString('en-US')} phrases: ${ar.ms.toFixed(0)} ms (AR = ${ar.result})`);

const TYPES = ['unary', 'twin-relation', 'twin-size', 'twin-order', 'binding', 'plural-subset', 'occluded'];
/** An evaluator state of `images` images with `perImage` phrases each, IoUs from `ious`. */
function stateOf(images, perImage) {
  const n = images * perImage;
  return {
    format: 'png-metrics/evaluator-state',
    version: 2,
    ious: Array.from(ious.subarray(0, n), (x) => (Number.isNaN(x) ? null : x)),
    flags: Array.from({ length: n }, () => Math.floor(random() * 4)),
    areas: Array.from({ length: n }, () => Math.floor(random() * 128 * 128)),
    tags: { phrase_type: Array.from({ length: n }, () => TYPES[Math.floor(random() * TYPES.length)]) },
    samples: Array.from({ length: images }, (_, i) => ({ label: `image ${i}`, image_id: i, phrases: perImage })),
  };
}
const evaluator = PngEvaluator.fromJSON(stateOf(PHRASES / 5, 5));
const full = time(() => evaluator.evaluate());
console.log(
  `PngEvaluator.evaluate(), ${PHRASES.toLocaleString('en-US')} phrases, 5 groups + 3 sizes + 7 phrase types with recall curves: ${full.ms.toFixed(0)} ms`,
);

const small = PngEvaluator.fromJSON(stateOf(300, 5));
const plain = time(() => small.evaluate());
const boot = time(() => small.evaluate({ bootstrap: { resamples: 1000 } }));
console.log(`bootstrap, 300 images × 5 phrases, 15 groups, 1000 resamples: ${(boot.ms - plain.ms).toFixed(0)} ms (evaluate() alone ${plain.ms.toFixed(0)} ms)`);
const paired = time(() => PngEvaluator.pairedBootstrap(small, small));
console.log(`pairedBootstrap, same: ${paired.ms.toFixed(0)} ms`);
const large = PngEvaluator.fromJSON(stateOf(10_000, 5));
const largePlain = time(() => large.evaluate());
const largeBoot = time(() => large.evaluate({ bootstrap: { resamples: 1000 } }));
console.log(
  `bootstrap, 10,000 images × 5 phrases, 15 groups, 1000 resamples: ${(largeBoot.ms - largePlain.ms).toFixed(0)} ms (O(resamples × groups × images))`,
);

const SIZE = 512;
const PIXELS = SIZE * SIZE;
/** A blob-like binary mask: a random axis-aligned ellipse. */
function ellipseMask() {
  const mask = new Uint8Array(PIXELS);
  const cy = random() * SIZE,
    cx = random() * SIZE,
    ry = 20 + random() * 150,
    rx = 20 + random() * 150;
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      if (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1) mask[y * SIZE + x] = 1;
    }
  return mask;
}
const SAMPLES = 50;
const PHRASES_PER_SAMPLE = 4;
const samples = Array.from({ length: SAMPLES }, (_, s) => ({
  label: `sample ${s}`,
  height: SIZE,
  width: SIZE,
  phrases: Array.from({ length: PHRASES_PER_SAMPLE }, (_, k) => ({
    label: `sample ${s} phrase ${k}`,
    isThing: k % 2 === 0,
    isPlural: k % 3 === 0,
    mask: ellipseMask(),
  })),
}));
const binary = samples.map((sample) => sample.phrases.map(() => ellipseMask()));
const kinds = {
  'binary Uint8Array': binary,
  'soft Float32Array': binary.map((masks) => masks.map((m) => Float32Array.from(m, (v) => v * 0.75))),
  'COCO RLE (compressed string)': binary.map((masks) => masks.map((m) => encodeRle(m, SIZE, SIZE))),
};
for (const [kind, predictions] of Object.entries(kinds)) {
  const evaluator = new PngEvaluator();
  evaluator.process(samples[0], predictions[0]); // warm-up
  evaluator.reset();
  const run = time(() => {
    for (const [s, sample] of samples.entries()) evaluator.process(sample, predictions[s]);
  });
  const phrases = SAMPLES * PHRASES_PER_SAMPLE;
  console.log(
    `PngEvaluator.process, ${SIZE}×${SIZE}, ${kind}: ${((phrases / run.ms) * 1000).toFixed(0)} phrases/s (${phrases} phrases in ${run.ms.toFixed(0)} ms)`,
  );
}
