// Does pretraining the frozen backbone matter? The demo's job (png train + png evaluate, same data,
// same settings) on the embedded pretrained backbone and on its randomly initialised twin (same
// architecture, tokenizer and schedule), plus how well each backbone's own cross-attention
// localises phrases (mean IoU of thresholded attention maps vs ground-truth masks). The two
// trainings run side by side (one per core). Writes <out>/comparison.md and comparison.json.
//   npm run compare:backbones   [-- --out <dir> --steps <n> --backend <name>]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.join(here, '..');
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'backbone-comparison' },
    steps: { type: 'string', default: '600' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const out = path.resolve(args.out);
const png = path.join(root, 'packages', 'pipeline', 'dist', 'cli.js');
const embedded = path.join(root, 'packages', 'diffusion-backbone', 'models', 'png-tiny-sd');
const started = performance.now();

/** Runs `node <argv>` with its output prefixed by `tag`; rejects on a non-zero exit. */
function node(tag, ...argv) {
  console.log(`[${tag}] $ ${argv.map((a) => path.relative(root, a) || a).join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const relay = (stream, sink) => {
      let rest = '';
      stream.on('data', (chunk) => {
        const lines = (rest + chunk).split(/\r?\n/);
        rest = lines.pop();
        for (const line of lines) if (line.trim()) sink.write(`[${tag}] ${line}\n`);
      });
    };
    relay(child.stdout, process.stdout);
    relay(child.stderr, process.stderr);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`[${tag}] ${path.basename(argv[0])} ${argv[1]} failed (exit ${code}); see the lines above`)),
    );
  });
}

const data = path.join(out, 'data');
const randomBackbone = path.join(out, 'random-backbone');
const backbones = { pretrained: embedded, random: randomBackbone };
await node('setup', path.join(root, 'scripts', 'random_backbone.mjs'), '--like', embedded, '--out', randomBackbone);
await node('setup', png, 'synth', '--out', data, '--train', '400', '--val', '60', '--seed', '0');
await Promise.all(
  Object.entries(backbones).map(async ([name, model]) => {
    const run = path.join(out, name, 'run');
    await node(
      name,
      png,
      'train',
      '--model',
      model,
      '--data',
      data,
      '--out',
      run,
      '--config',
      path.join(here, 'configs', 'png_tiny.json'),
      '--steps',
      args.steps,
      '--backend',
      args.backend,
    );
    await node(name, png, 'evaluate', '--model', model, '--data', data, '--run', run, '--out', path.join(out, name, 'eval'), '--backend', args.backend);
  }),
);
const iouFile = path.join(out, 'attention_iou.json');
await node(
  'attention',
  path.join(root, 'scripts', 'attention_iou.mjs'),
  '--data',
  data,
  '--model',
  embedded,
  '--model',
  randomBackbone,
  '--backend',
  args.backend,
  '--json',
  iouFile,
);

const pct = (x) => (x === null || x === undefined ? 'n/a' : (100 * x).toFixed(1));
const groups = ['overall', 'things', 'stuff', 'singulars', 'plurals'];
const reports = Object.fromEntries(
  Object.keys(backbones).map((name) => [name, JSON.parse(fs.readFileSync(path.join(out, name, 'eval', 'report.json'), 'utf8'))]),
);
const iou = JSON.parse(fs.readFileSync(iouFile, 'utf8'));
const iouOf = (model) => iou.models.find((r) => path.resolve(r.model) === path.resolve(model));
const lines = [
  `Frozen backbone: pretrained vs randomly initialised (same architecture), synthetic val split, ${args.steps} training steps each.`,
  '',
  `| backbone | ${groups.map((g) => `AR ${g}`).join(' | ')} | cross-attention mIoU (overall / things / stuff) |`,
  `|---|${groups.map(() => '---:').join('|')}|---:|`,
  ...Object.entries(backbones).map(([name, model]) => {
    const r = iouOf(model);
    return `| ${name} | ${groups.map((g) => pct(reports[name].average_recall[g])).join(' | ')} | ${pct(r.meanIoU.overall)} / ${pct(r.meanIoU.things)} / ${pct(r.meanIoU.stuff)} |`;
  }),
  `| whole-image baseline | ${groups.map((g) => pct(reports.pretrained.baseline_full_image[g])).join(' | ')} | |`,
];
const markdown = `${lines.join('\n')}\n`;
fs.writeFileSync(path.join(out, 'comparison.md.tmp'), markdown);
fs.renameSync(path.join(out, 'comparison.md.tmp'), path.join(out, 'comparison.md'));
const summary = {
  steps: Number(args.steps),
  average_recall: Object.fromEntries(Object.entries(reports).map(([k, r]) => [k, r.average_recall])),
  attention_iou: iou,
};
fs.writeFileSync(path.join(out, 'comparison.json.tmp'), `${JSON.stringify(summary, null, 2)}\n`);
fs.renameSync(path.join(out, 'comparison.json.tmp'), path.join(out, 'comparison.json'));
console.log(`\n${markdown}\nwrote ${path.join(out, 'comparison.md')} (${((performance.now() - started) / 60000).toFixed(1)} min)`);
