// How well each frozen text-to-image backbone's own cross-attention localises the phrases of a PNG
// benchmark split, before any training: the mean IoU between every grounded phrase's cross-attention
// map (crossAttentionIoU of @png/pipeline) and its ground-truth mask, overall / things / stuff.
//   node scripts/attention_iou.mjs --data DIR --model DIR [--model DIR ...] [--split val2017] [--limit N]
//     [--timestep T] [--seed S] [--threshold F] [--image-size S] [--batch-size N] [--backend wasm] [--json FILE]
// --model: a diffusers pipeline folder (unet/, vae/, text_encoder/, tokenizer/). Reads the built
// packages: build them first (npx nx run @png/pipeline:build).
import { parseArgs } from 'node:util';
import { setBackend } from '@png/core';
import { writeFileAtomic } from '@png/node-utils';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { crossAttentionIoU } from '@png/pipeline';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string' },
    model: { type: 'string', multiple: true },
    split: { type: 'string', default: 'val2017' },
    limit: { type: 'string' },
    timestep: { type: 'string', default: '200' },
    seed: { type: 'string', default: '0' },
    threshold: { type: 'string', default: '0.5' },
    'image-size': { type: 'string' },
    'batch-size': { type: 'string', default: '4' },
    backend: { type: 'string', default: 'wasm' },
    json: { type: 'string' },
  },
});
if (!args.data || !args.model?.length)
  throw new Error('usage: node scripts/attention_iou.mjs --data DIR --model DIR [--model DIR ...] [--limit N] [--timestep T] [--backend wasm] [--json FILE]');

/** The integer value of --`name` (undefined when absent). */
function intArg(name) {
  const text = args[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value)) throw new Error(`--${name} ${text}: expected an integer`);
  return value;
}

const options = {
  split: args.split,
  limit: intArg('limit'),
  timestep: intArg('timestep'),
  seed: intArg('seed'),
  threshold: Number(args.threshold),
  imageSize: intArg('image-size'),
  batchSize: intArg('batch-size'),
};
await setBackend(args.backend);

const rows = [];
for (const model of args.model) {
  const backbone = await DiffusionBackbone.fromPretrained(model);
  try {
    const result = await crossAttentionIoU(backbone, args.data, { ...options, onProgress: (n) => process.stderr.write(`\r${model}: ${n} samples scored`) });
    process.stderr.write('\n');
    rows.push({ model, ...result });
  } finally {
    backbone.dispose();
  }
}

const iou = (v) => (Number.isNaN(v) ? '—' : v.toFixed(3));
const width = Math.max(5, ...rows.map((r) => r.model.length));
console.log(
  `${'model'.padEnd(width)}  ${'mean IoU: overall'.padStart(17)}${'things'.padStart(8)}${'stuff'.padStart(8)}  ${'phrases: overall'.padStart(16)}${'things'.padStart(8)}${'stuff'.padStart(8)}${'skipped'.padStart(9)}`,
);
for (const { model, meanIoU, phrases, skipped } of rows) {
  console.log(
    `${model.padEnd(width)}  ${iou(meanIoU.overall).padStart(17)}${iou(meanIoU.things).padStart(8)}${iou(meanIoU.stuff).padStart(8)}  ${String(phrases.overall).padStart(16)}${String(phrases.things).padStart(8)}${String(phrases.stuff).padStart(8)}${String(skipped).padStart(9)}`,
  );
}
console.log(
  `split ${args.split} of ${args.data}, timestep ${options.timestep}, seed ${options.seed}, threshold ${options.threshold} of each map's [min, max] range, backend ${args.backend}; skipped = phrases past the 77-token truncation`,
);
if (args.json) {
  writeFileAtomic(args.json, `${JSON.stringify({ data: args.data, backend: args.backend, ...options, models: rows }, null, 2)}\n`);
  console.log(`wrote ${args.json}`);
}
