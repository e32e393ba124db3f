// The README's sample grid: held-out prompts drawn by the embedded pretrained backbone (top row)
// and by its randomly initialised twin (bottom row), DDIM 50 steps, guidance 7.5, seed 0 for all.
// Each prompt is "In this picture I can see <title>." — the narrative style the backbone was
// pretrained on; none of them is a training caption.
//   npm run build && node examples/sample_grid.mjs --random <random twin dir> [--out docs/pretrained_samples.png]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { setBackend } from '@png/core';
import { writeFileAtomic } from '@png/node-utils';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { encodePng } from '@png/png-data';
import { enlargeImage, tileImages } from '@png/pipeline';

const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const { values: args } = parseArgs({
  options: {
    random: { type: 'string' },
    out: { type: 'string', default: path.join(root, 'docs', 'pretrained_samples.png') },
    scale: { type: 'string', default: '3' },
  },
});
if (!args.random || !fs.existsSync(args.random))
  throw new Error(
    '--random: the random twin of the embedded backbone (node scripts/random_backbone.mjs --like packages/diffusion-backbone/models/png-tiny-sd --out DIR)',
  );
const titles = [
  'a red circle on the grass',
  'two blue squares in the sky',
  'a yellow triangle on the sand',
  'a white ring in the water',
  'a green diamond in the sky',
  'three purple circles in the sky',
  'an orange square on the beach',
  'a black triangle in a blue sky',
];
const prompts = titles.map((t) => `In this picture I can see ${t}.`);
const scale = Number(args.scale);
await setBackend('wasm');
const tiles = [];
for (const dir of [path.join(root, 'packages', 'diffusion-backbone', 'models', 'png-tiny-sd'), args.random]) {
  const backbone = await DiffusionBackbone.fromPretrained(dir, { vaeParts: 'all' });
  const images = backbone.generate(prompts, { numInferenceSteps: 50, guidanceScale: 7.5, seed: 0 });
  const [b, h, w] = images.shape;
  const pixels = await images.data();
  images.dispose();
  backbone.dispose();
  for (let i = 0; i < b; i++) {
    const data = Uint8Array.from(pixels.subarray(i * h * w * 3, (i + 1) * h * w * 3), (x) => Math.round(255 * x));
    tiles.push({ image: enlargeImage({ width: w, height: h, data }, scale), title: titles[i] });
  }
}
const grid = tileImages(tiles, { columns: titles.length });
writeFileAtomic(args.out, encodePng(grid.width, grid.height, grid.data));
console.log(`wrote ${args.out} (${titles.length} prompts × pretrained / random init)`);
