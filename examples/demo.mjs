// The main job: a synthetic PNG benchmark → EIPA + MLMA + decoder trained on the embedded frozen
// backbone (wasm) → Average Recall on the held-out split, with figures. Each stage is the `png`
// command a user would type; rerunning resumes the training where it stopped.
//   npm run demo   [-- --out <dir> --steps <n> --backend <name>]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const here = path.dirname(new URL(import.meta.url).pathname);
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'demo-output' },
    steps: { type: 'string', default: '600' },
    train: { type: 'string', default: '400' },
    val: { type: 'string', default: '60' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const out = path.resolve(args.out);
const png = path.join(here, '..', 'packages', 'pipeline', 'dist', 'cli.js');
const started = performance.now();

function run(...argv) {
  console.log(`\n$ png ${argv.join(' ')}`);
  const { status } = spawnSync(process.execPath, [png, ...argv], { stdio: 'inherit' });
  if (status !== 0) {
    console.error(`demo: 'png ${argv[0]}' failed (exit ${status}); fix the error above and rerun npm run demo (training resumes from its last checkpoint)`);
    process.exit(status ?? 1);
  }
}

const data = path.join(out, 'data');
const runDir = path.join(out, 'run');
const evalDir = path.join(out, 'eval');
run('synth', '--out', data, '--train', args.train, '--val', args.val, '--seed', '0');
run('train', '--data', data, '--out', runDir, '--config', path.join(here, 'configs', 'png_tiny.json'), '--steps', args.steps, '--backend', args.backend, '--progress');
run('evaluate', '--data', data, '--run', runDir, '--out', evalDir, '--backend', args.backend, '--progress');

const report = JSON.parse(fs.readFileSync(path.join(evalDir, 'report.json'), 'utf8'));
const pct = (x) => (x === null ? 'nan' : (100 * x).toFixed(1));
const groups = ['overall', 'things', 'stuff', 'singulars', 'plurals'];
console.log(`\nAverage Recall on the synthetic val split (${report.samples} narratives, ${report.counts.overall} phrases):`);
console.log(`  model                  ${groups.map((g) => `${g} ${pct(report.average_recall[g])}`).join('  ')}`);
console.log(`  whole-image baseline   ${groups.map((g) => `${g} ${pct(report.baseline_full_image[g])}`).join('  ')}`);
console.log(`\nOutputs (${((performance.now() - started) / 60000).toFixed(1)} min):
  ${path.join(evalDir, 'report.json')}      AR per group, recall curves
  ${path.join(evalDir, 'ar_curves.svg')}    the recall curves (Figure 4 layout)
  ${path.join(evalDir, 'overlays')}/        ground truth vs predicted masks with the phrase legend
  ${path.join(evalDir, 'attention')}/       per-layer EIPA attention: each pixel in its most-attended phrase's colour (Figure 5)
  ${path.join(runDir, 'grounder')}/         the trained model (png ground --run ${runDir} --image … --caption "…")`);
