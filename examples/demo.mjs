// The main job: a synthetic PNG benchmark of grounding scenes (96×96; twins, binding, plural subsets,
// occlusion: phrases their own colour and shape words cannot resolve) → EIPA + MLMA + decoder
// trained on the embedded frozen backbone (wasm) → Average Recall on the held-out split per phrase
// type, beside the colour-lookup rule that learns nothing, with figures. Each stage is the `png`
// command a user would type; rerunning resumes the training where it stopped.
//   npm run demo   [-- --out <dir> --steps <n> --train <n> --val <n> --kind grounding|unary --size <px> --backend <name>]
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const here = path.dirname(new URL(import.meta.url).pathname);
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'demo-output' },
    steps: { type: 'string', default: '450' },
    train: { type: 'string', default: '400' },
    val: { type: 'string', default: '300' },
    kind: { type: 'string', default: 'grounding' },
    size: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const out = path.resolve(args.out);
const png = path.join(here, '..', 'packages', 'pipeline', 'dist', 'cli.js');
const started = performance.now();

// Training and evaluation run wasm's XNNPACK on every core (up to 8; PNG_WASM_THREADS overrides,
// and the native kernels, PNG_NATIVE=1, use every core themselves): the same weights bit for bit
// as on one thread, sooner.
const threads = process.env.PNG_WASM_THREADS ?? (process.env.PNG_NATIVE === '1' ? undefined : String(Math.min(os.availableParallelism(), 8)));

function run(...argv) {
  console.log(`\n$ png ${argv.join(' ')}`);
  const { status } = spawnSync(process.execPath, [png, ...argv], {
    stdio: 'inherit',
    env: threads ? { ...process.env, PNG_WASM_THREADS: threads } : process.env,
  });
  if (status !== 0) {
    console.error(`demo: 'png ${argv[0]}' failed (exit ${status}); fix the error above and rerun npm run demo (training resumes from its last checkpoint)`);
    process.exit(status ?? 1);
  }
}

// The images are drawn, trained on and scored at one size (png train letterboxes to --image-size).
const size = args.size ?? (args.kind === 'grounding' ? '96' : '64');
const data = path.join(out, 'data');
const runDir = path.join(out, 'run');
const evalDir = path.join(out, 'eval');
// Size buckets of the grounding scenes: the terciles of the val segments' areas (seed 0) at 96×96.
const sizeThresholds = args.kind === 'grounding' ? ['--size-thresholds', '600,1600'] : [];
const configFile = path.join(here, 'configs', args.kind === 'grounding' ? 'png_grounding.json' : 'png_tiny.json');
// the perfect-mask ceiling at the model's mask resolution (mask_stride; null = the tiny UNet's finest level, 4)
const maskStride = String(JSON.parse(fs.readFileSync(configFile, 'utf8')).mask_stride ?? 4);
run('synth', '--kind', args.kind, '--out', data, '--train', args.train, '--val', args.val, '--seed', '0', '--size', size);
// the rules that learn nothing need no model: they run beside the training
const baselineArgs = ['baseline', '--data', data, '--rule', 'colour-lookup', '--rule', 'perfect-mask', '--stride', maskStride, '--json', ...sizeThresholds];
const baselineFile = path.join(out, 'baselines.json');
const baseline = new Promise((resolve) => {
  const output = fs.openSync(baselineFile, 'w'); // a file, not a pipe: the synchronous runs below block this process's event loop
  const child = spawn(process.execPath, [png, ...baselineArgs], { stdio: ['ignore', output, 'inherit'] });
  child.on('close', (status) => {
    fs.closeSync(output);
    resolve(status);
  });
});
run('train', '--data', data, '--out', runDir, '--config', configFile, '--steps', args.steps, '--image-size', size, '--backend', args.backend, '--progress');
run('evaluate', '--data', data, '--run', runDir, '--out', evalDir, '--backend', args.backend, '--progress', ...sizeThresholds);
const baselineStatus = await baseline;
if (baselineStatus !== 0) {
  console.error(`demo: 'png ${baselineArgs.join(' ')}' failed (exit ${baselineStatus}); see its error above`);
  process.exit(baselineStatus ?? 1);
}

const report = JSON.parse(fs.readFileSync(path.join(evalDir, 'report.json'), 'utf8'));
const rules = Object.fromEntries(JSON.parse(fs.readFileSync(baselineFile, 'utf8')).scores.map((r) => [r.name, r]));
const pct = (x) => (x === null || x === undefined ? 'nan' : (100 * x).toFixed(1));
const groups = ['overall', 'things', 'stuff', 'singulars', 'plurals'];
const types = Object.keys(report.by_tag?.phrase_type ?? {});
const row = (name, ar, byType) =>
  `| ${name} | ${groups.map((g) => pct(ar[g])).join(' | ')} | ${types.map((t) => pct(byType?.[t]?.average_recall)).join(' | ')} |`;
const table = [
  `Average Recall (%) on the synthetic val split (${report.samples} narratives, ${report.counts.overall} phrases):`,
  '',
  `| | ${[...groups, ...types].join(' | ')} |`,
  `|---|${[...groups, ...types].map(() => '---:').join('|')}|`,
  row('demo model', report.average_recall, report.by_tag?.phrase_type),
  ...Object.entries(rules).map(([name, r]) =>
    row(name.startsWith('perfect-mask') ? `perfect mask, stride ${maskStride} (ceiling)` : name, r, r.by_tag?.phrase_type),
  ),
  row('whole-image baseline', report.baseline_full_image, undefined),
  '',
];
fs.writeFileSync(path.join(out, 'summary.md'), table.join('\n'));
console.log(`\n${table.join('\n')}`);
console.log(`\nOutputs (${((performance.now() - started) / 60000).toFixed(1)} min):
  ${path.join(out, 'summary.md')}           the table above
  ${path.join(evalDir, 'report.json')}      AR per group, phrase type and size, bootstrap intervals, recall curves
  ${path.join(evalDir, 'ar_curves.svg')}    the recall curves (Figure 4 layout)
  ${path.join(evalDir, 'overlays')}/        ground truth vs predicted masks with the phrase legend
  ${path.join(evalDir, 'attention')}/       per-layer EIPA attention: each pixel in its most-attended phrase's colour (Figure 5)
  ${path.join(runDir, 'grounder')}/         the trained model (png ground --run ${runDir} --image … --caption "…")`);
