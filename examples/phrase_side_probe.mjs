// Do a trained grounder's phrase features say where a twin is? A linear probe (logistic regression,
// standardised features, L2 1e-2, 2,000 full-batch steps) learns from the train split's twin phrases
// of one group (`png synth --kind grounding`) on which side of the image the phrase's target lies,
// and is scored on the val split's of that group. The side follows from the words for twin-order
// phrases: left or right half where their sentence names left or right ("on the far left"), top or
// bottom half where it names top or bottom ("the lowest ring"); a twin-relation or twin-size
// phrase's side (left or right half) depends on the image, so those rows are the chance control.
// Three feature sets: the frozen CLIP phrase features (each phrase's mean token state), those joined
// with the mean state of the rest of the phrase's sentence (`encodePhrases(…, {sentence: true})`,
// what `text.sentence_context` reads), and the phrase after the grounder's trainable text side (what
// EIPA, MLMA and the decoder read). Near the majority side's share means the features do not carry it.
//
//   node examples/phrase_side_probe.mjs --run RUN_DIR --data BENCHMARK_DIR [--train N] [--val N]
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { encodePhrases, sentenceSpan } from '@png/diffusion-backbone';
import { loadPngTinySd } from '@png/diffusion-backbone/png-tiny-sd';
import { PngGrounder, phraseEncoding, readGroundedSamples } from '@png/pipeline';

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
const encoding = { ...phraseEncoding(grounder.config), sentence: true };

/** The probe group of a twin phrase (see the file's comment) and whether it asks for the top/bottom axis. */
function probeGroup(type, sentence) {
  if (type !== 'twin-order') return { group: type, vertical: false };
  if (/\b(left|right)|(left|right)most/i.test(sentence)) return { group: 'twin-order, left/right named', vertical: false };
  if (/top|bottom|low|high|upper/i.test(sentence)) return { group: 'twin-order, top/bottom named', vertical: true };
  return { group: 'twin-order, other', vertical: false };
}

/** Twin phrases of a split: frozen, frozen ⊕ sentence and text-side features, whether the target's centroid is on the first side (left or top half), the group. */
async function twinPhrases(split, limit) {
  const { samples } = await readGroundedSamples(args.data, split, { limit });
  const out = { frozen: [], withSentence: [], textSide: [], first: [], group: [] };
  const { backbone, text } = grounder;
  for (const sample of samples) {
    const n = Math.min(maxPhrases, sample.phrases.length);
    const narrative = { caption: sample.narrative.caption, phrases: sample.narrative.phrases.slice(0, n) };
    const features = encodePhrases(backbone.tokenizer, backbone.textEncoder, [narrative], encoding);
    const read = text
      ? text.readCaption(text.readSentence(features.tensor, features.mask, features.sentence), features.mask, features.caption)
      : features.tensor; // [1, P, D]
    const [frozen, sentence, textSide] = [await features.tensor.array(), await features.sentence.array(), await read.array()];
    tf.dispose([features, read]);
    const { width, height } = sample.image;
    for (let i = 0; i < n; i++) {
      const phrase = sample.phrases[i];
      if (!phrase.tags.phrase_type?.startsWith('twin')) continue;
      const [start, end] = sentenceSpan(narrative.caption, narrative.phrases[i]);
      const { group, vertical } = probeGroup(phrase.tags.phrase_type, narrative.caption.slice(start, end));
      let sum = 0;
      let count = 0;
      for (let k = 0; k < phrase.mask.length; k++) {
        if (!phrase.mask[k]) continue;
        sum += vertical ? Math.floor(k / width) : k % width;
        count++;
      }
      out.frozen.push(frozen[0][i]);
      out.withSentence.push([...frozen[0][i], ...sentence[0][i]]);
      out.textSide.push(textSide[0][i]);
      out.first.push(sum / count < (vertical ? height : width) / 2 ? 1 : 0);
      out.group.push(group);
    }
  }
  return out;
}

/** Logistic regression on standardised features, fitted on the train rows `keep` selects; accuracy (%) on the val rows it selects. */
function probeAccuracy(xAll, yAll, xVal, yVal, keep, keepTrain) {
  const fit = xAll.map((_, i) => i).filter(keepTrain);
  const [x, y] = [fit.map((i) => xAll[i]), fit.map((i) => yAll[i])];
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
console.log(`twin phrases: ${train.first.length} train, ${val.first.length} val`);
console.log('| twin phrases | train / val | majority side | frozen CLIP phrase | frozen phrase ⊕ its sentence | after the text side |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const group of ['twin-order, left/right named', 'twin-order, top/bottom named', 'twin-relation', 'twin-size']) {
  const [keepTrain, keep] = [train, val].map((split) => (i) => split.group[i] === group);
  const fitted = train.group.filter((g) => g === group).length;
  if (fitted < 10 || !val.group.includes(group)) {
    console.log(`| ${group} | ${fitted} / ${val.group.filter((g) => g === group).length} | too few to probe | | | |`);
    continue;
  }
  const [frozen, withSentence, textSide] = ['frozen', 'withSentence', 'textSide'].map((f) =>
    probeAccuracy(train[f], train.first, val[f], val.first, keep, keepTrain),
  );
  const cells = [frozen, withSentence, textSide].map((p) => `${p.accuracy.toFixed(1)} %`);
  console.log(`| ${group} | ${fitted} / ${frozen.n} | ${frozen.majority.toFixed(1)} % | ${cells.join(' | ')} |`);
}
