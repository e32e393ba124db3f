// Benchmark of @png/png-metrics (run `npx tsup` first, then `npm run bench`).
// 1. AR of 1,000,000 phrases (target: < 1 s on one core), and a full evaluate() of 1,000,000 phrases.
// 2. PngEvaluator throughput on 512×512 masks, for binary, soft and COCO-RLE predictions.
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

const state = {
  format: 'png-metrics/evaluator-state',
  version: 1,
  ious: Array.from(ious, (x) => (Number.isNaN(x) ? null : x)),
  flags: Array.from({ length: PHRASES }, () => Math.floor(random() * 4)),
};
const evaluator = PngEvaluator.fromJSON(state);
const full = time(() => evaluator.evaluate());
console.log(`PngEvaluator.evaluate(), ${PHRASES.toLocaleString('en-US')} phrases, 5 groups with recall curves: ${full.ms.toFixed(0)} ms`);

const SIZE = 512;
const PIXELS = SIZE * SIZE;
/** A blob-like binary mask: a random axis-aligned ellipse. */
function ellipseMask() {
  const mask = new Uint8Array(PIXELS);
  const cy = random() * SIZE, cx = random() * SIZE, ry = 20 + random() * 150, rx = 20 + random() * 150;
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
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
  phrases: Array.from({ length: PHRASES_PER_SAMPLE }, (_, k) => ({ label: `sample ${s} phrase ${k}`, isThing: k % 2 === 0, isPlural: k % 3 === 0, mask: ellipseMask() })),
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
  const run = time(() => samples.forEach((sample, s) => evaluator.process(sample, predictions[s])));
  const phrases = SAMPLES * PHRASES_PER_SAMPLE;
  console.log(`PngEvaluator.process, ${SIZE}×${SIZE}, ${kind}: ${((phrases / run.ms) * 1000).toFixed(0)} phrases/s (${phrases} phrases in ${run.ms.toFixed(0)} ms)`);
}
