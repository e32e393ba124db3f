// The paper's component analysis at small scale: static prompting, +EIPA, +MLMA and both, each
// trained the same way on the same synthetic benchmark; writes a Markdown table of their AR.
// Every variant is the base config plus a few fields — ablations are configs.
//   npm run ablation   [-- --out <dir> --steps <n> --backend <name>]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const here = path.dirname(new URL(import.meta.url).pathname);
const { values: args } = parseArgs({
  options: { out: { type: 'string', default: 'ablation-output' }, steps: { type: 'string', default: '600' }, backend: { type: 'string', default: 'wasm' } },
});
const out = path.resolve(args.out);
const png = path.join(here, '..', 'packages', 'pipeline', 'dist', 'cli.js');
const base = JSON.parse(fs.readFileSync(path.join(here, 'configs', 'png_tiny.json'), 'utf8'));
const STATIC = { extract: false, inject: false, dynamic_prompt: false };
const variants = [
  { name: 'static prompting', eipa: STATIC, mlma: { mutual: false } },
  { name: '+ EIPA', eipa: {}, mlma: { mutual: false } },
  { name: '+ MLMA', eipa: STATIC, mlma: {} },
  { name: '+ EIPA + MLMA (full)', eipa: {}, mlma: {} },
];

function run(...argv) {
  console.log(`\n$ png ${argv.join(' ')}`);
  const { status } = spawnSync(process.execPath, [png, ...argv], { stdio: 'inherit' });
  if (status !== 0) process.exit(status ?? 1);
}

const data = path.join(out, 'data');
run('synth', '--out', data, '--train', '400', '--val', '60', '--seed', '0');
const rows = [];
for (const [i, v] of variants.entries()) {
  const dir = path.join(out, `variant${i}`);
  const config = { ...base, eipa: { ...base.eipa, ...v.eipa }, mlma: { ...base.mlma, ...v.mlma } };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  run('train', '--data', data, '--out', path.join(dir, 'run'), '--config', path.join(dir, 'config.json'), '--steps', args.steps, '--backend', args.backend);
  run('evaluate', '--data', data, '--run', path.join(dir, 'run'), '--out', path.join(dir, 'eval'), '--backend', args.backend, '--overlays', '0', '--attention-maps', '0');
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'report.json'), 'utf8'));
  rows.push({ name: v.name, changes: JSON.stringify({ eipa: v.eipa, mlma: v.mlma }), ar: report.average_recall, baseline: report.baseline_full_image });
}

const groups = ['overall', 'things', 'stuff', 'singulars', 'plurals'];
const pct = (x) => (x === null ? 'nan' : (100 * x).toFixed(1));
const table = [
  `Average Recall (%) on the synthetic val split after ${args.steps} training steps, embedded backbone, ${args.backend}.`,
  '',
  `| variant | ${groups.join(' | ')} | config changes |`,
  `|---|${groups.map(() => '---:').join('|')}|---|`,
  ...rows.map((r) => `| ${r.name} | ${groups.map((g) => pct(r.ar[g])).join(' | ')} | \`${r.changes}\` |`),
  `| whole-image baseline | ${groups.map((g) => pct(rows[0].baseline[g])).join(' | ')} | every phrase = the whole image |`,
  '',
];
fs.writeFileSync(path.join(out, 'ablation.md'), table.join('\n'));
console.log(`\n${table.join('\n')}\nwritten to ${path.join(out, 'ablation.md')}`);
