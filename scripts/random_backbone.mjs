// Writes the randomly initialised twin of a diffusers pipeline folder: the same configs, tokenizer
// and scheduler, with fresh seeded weights (torch's default initialisation). The baseline that a
// pretrained backbone is compared against (examples/backbone_comparison.mjs).
//   node scripts/random_backbone.mjs --like <pipeline dir> --out <dir> [--seed S]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { WeightScope, parseJsonObject, setBackend } from '@png/core';
import { AutoencoderKL, CLIPTextModel, UNet2DConditionModel, clipTextConfigFromJson } from '@png/diffusion-backbone';

const { values: args } = parseArgs({ options: { like: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string', default: '1' } } });
if (!args.like || !args.out) {
  console.error('usage: node scripts/random_backbone.mjs --like <pipeline dir> --out <dir> [--seed S]');
  process.exit(2);
}
await setBackend('cpu'); // initialisation only: every backend draws the same seeded weights
const seed = Number(args.seed);
const config = (component) => {
  const file = path.join(args.like, component, 'config.json');
  return parseJsonObject(fs.readFileSync(file, 'utf8'), file);
};
const staging = `${args.out}.tmp-${process.pid}`;
fs.rmSync(staging, { recursive: true, force: true });
const unet = UNet2DConditionModel.create(config('unet'), { seed });
const vae = AutoencoderKL.create(config('vae'), { seed: seed + 1 });
const textEncoder = CLIPTextModel.fromScope(WeightScope.fresh({ seed: seed + 2, trainable: false }), clipTextConfigFromJson(config('text_encoder')));
await unet.save(path.join(staging, 'unet'));
await vae.save(path.join(staging, 'vae'));
await textEncoder.save(path.join(staging, 'text_encoder'));
for (const m of [unet, vae, textEncoder]) m.dispose();
for (const shared of ['tokenizer', 'scheduler', 'model_index.json']) {
  if (fs.existsSync(path.join(args.like, shared))) fs.cpSync(path.join(args.like, shared), path.join(staging, shared), { recursive: true });
}
fs.rmSync(args.out, { recursive: true, force: true });
fs.renameSync(staging, args.out);
console.log(`wrote ${args.out}: the architecture, tokenizer and scheduler of ${args.like} with random weights (seed ${seed})`);
