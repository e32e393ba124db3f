// Do a trained grounder's phrase features say where a twin is? A linear probe (logistic regression,
// standardised features, L2 1e-2, 2,000 full-batch steps) learns from the train split's twin phrases
// (`png synth --kind grounding`) whether the phrase's target lies in the left half of the image, and
// is scored on the val split's, per twin type: once on the frozen CLIP phrase features
// (`grounder.encodePhrases`) and once after the grounder's trainable text side (what EIPA, MLMA and
// the decoder read). Near the share of the majority side means the features do not carry the side.
//
//   node examples/phrase_side_probe.mjs --run RUN_DIR --data BENCHMARK_DIR [--train N] [--val N]
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { loadPngTinySd } from '@png/diffusion-backbone/png-tiny-sd';
import { PngGrounder, readGroundedSamples } from '@png/pipeline';

const { values: args } = parseArgs({
  options: { run: { type: 'string' }, data: { type: 'string' }, train: { type: 'string', default: '400' }, val: { type: 'string', default: '300' } },
});
if (!args.run || !args.data) {
  console.error('Usage: node examples/phrase_side_probe.mjs --run RUN_DIR (a png train --out) --data BENCHMARK_DIR [--train N] [--val N]');
  process.exit(2);
}
await setBackend('wasm');
const grounder = await PngGrounder.fromPretrained(path.join(args.run, 'grounder'), await loadPngTinySd());
const maxPhrases = grounder.config.max_phrases;

/** Twin phrases of a split: frozen and text-side features, whether the target's centroid is in the left half, the type. */
async function twinPhrases(split, limit) {
  const { samples } = await readGroundedSamples(args.data, split, { limit });
  const out = { frozen: [], textSide: [], left: [], type: [] };
  for (const sample of samples) {
    const n = Math.min(maxPhrases, sample.phrases.length);
    const features = grounder.encodePhrases([{ caption: sample.narrative.caption, phrases: sample.narrative.phrases.slice(0, n) }]);
    const read = grounder.text ? grounder.text.readCaption(features.tensor, features.mask, features.caption) : features.tensor; // [1, P, D]
    const [frozen, textSide] = [await features.tensor.array(), await read.array()];
    tf.dispose([features.tensor, features.mask, features.caption?.tensor, features.caption?.mask, read]);
    const width = sample.image.width;
    for (let i = 0; i < n; i++) {
      const phrase = sample.phrases[i];
      if (!phrase.tags.phrase_type?.startsWith('twin')) continue;
      let sum = 0;
      let count = 0;
      for (let k = 0; k < phrase.mask.length; k++) {
        if (!phrase.mask[k]) continue;
        sum += k % width;
        count++;
      }
      out.frozen.push(frozen[0][i]);
      out.textSide.push(textSide[0][i]);
      out.left.push(sum / count < width / 2 ? 1 : 0);
      out.type.push(phrase.tags.phrase_type);
    }
  }
  return out;
}

/** Logistic regression on standardised features; accuracy (%) on the val rows `keep` selects. */
function probeAccuracy(x, y, xVal, yVal, keep) {
  const d = x[0].length;
  const mean = Array(d).fill(0);
  const variance = Array(d).fill(0);
  for (const row of x) for (let j = 0; j < d; j++) mean[j] += row[j] / x.length;
  for (const row of x) for (let j = 0; j < d; j++) variance[j] += (row[j] - mean[j]) ** 2 / x.length;
  const standardise = (row) => row.map((v, j) => (v - mean[j]) / Math.sqrt(variance[j] + 1e-8));
  const [z, zVal] = [x.map(standardise), xVal.map(standardise)];
  const w = Array(d).fill(0);
  let b = 0;
  const logit = (row) => row.reduce((a, v, j) => a + v * w[j], b);
  for (let step = 0; step < 2000; step++) {
    const gw = Array(d).fill(0);
    let gb = 0;
    z.forEach((row, i) => {
      const e = 1 / (1 + Math.exp(-logit(row))) - y[i];
      for (let j = 0; j < d; j++) gw[j] += (e * row[j]) / z.length;
      gb += e / z.length;
    });
    for (let j = 0; j < d; j++) w[j] -= 0.1 * (gw[j] + 1e-2 * w[j]);
    b -= 0.1 * gb;
  }
  const rows = zVal.map((_, i) => i).filter(keep);
  const right = rows.filter((i) => (logit(zVal[i]) > 0 ? 1 : 0) === yVal[i]).length;
  const leftShare = rows.filter((i) => yVal[i] === 1).length / rows.length;
  return { accuracy: (100 * right) / rows.length, majority: 100 * Math.max(leftShare, 1 - leftShare), n: rows.length };
}

const train = await twinPhrases('train2017', Number(args.train));
const val = await twinPhrases('val2017', Number(args.val));
console.log(`twin phrases: ${train.left.length} train, ${val.left.length} val`);
console.log('| twin type | val phrases | majority side | probe on frozen CLIP features | probe after the text side |');
console.log('|---|---:|---:|---:|---:|');
for (const type of ['twin-order', 'twin-relation', 'twin-size', 'all twins']) {
  const keep = (i) => type === 'all twins' || val.type[i] === type;
  const frozen = probeAccuracy(train.frozen, train.left, val.frozen, val.left, keep);
  const textSide = probeAccuracy(train.textSide, train.left, val.textSide, val.left, keep);
  console.log(`| ${type} | ${frozen.n} | ${frozen.majority.toFixed(1)} % | ${frozen.accuracy.toFixed(1)} % | ${textSide.accuracy.toFixed(1)} % |`);
}
