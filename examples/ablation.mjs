// The paper's component analysis (its Figure 4) over several seeds: static prompting, EIPA's parts,
// EIPA, MLMA and the full model, each trained and evaluated on a synthetic benchmark of its seed, two
// `png` processes side by side. Writes ablation.md (mean AR ± 95 % CI per variant and phrase group,
// paired differences vs static prompting), ablation.json and ablation_curves.svg to --out.
// Variants are configs over a base config (examples/configs/png_grounding.json; examples/configs/ablation_variants.json).
// Resumable: rerun the same command after a kill. Statistics: examples/ablation_stats.cjs.
//   npm run ablation [-- --quick] [-- --help]
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveEipaConfig } from '@png/eipa';
import { formatDuration as formatMs, writeFileAtomic } from '@png/node-utils';
import { PngGroundTruth, evaluatePredictions, parsePredictions, parseSizeThresholds, renderRecallCurvePanelsSvg } from '@png/png-metrics';
import stats from './ablation_stats.cjs';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const PNG = path.join(HERE, '..', 'packages', 'pipeline', 'dist', 'cli.js');

/**
 * The two budgets on a 2-core machine, two runs side by side: --quick (the README's figure) and the
 * default (≤ 2 h). Sized from runs at 96×96 (examples/configs/png_grounding.json, batch 4, wasm,
 * 600 steps: where the grounding scenes' unary and binding phrases are still improving; 150–300 steps
 * left every variant far below the colour-lookup rule): static ≈ 0.9 s per step and full ≈ 1.7 s on
 * the loaded shared machine, ≈ 1.5 narratives per image evaluated at ≈ 0.15 s each. The command
 * calibrates on this machine and prints its own estimate before it starts.
 */
const PRESETS = {
  full: { budgetMinutes: 120, seeds: 5, variants: 'static,eipa,mlma,full', size: 96, train: 400, val: 150, steps: 600 },
  quick: { budgetMinutes: 45, seeds: 3, variants: 'static,eipa,mlma', size: 96, train: 400, val: 150, steps: 600 },
};

/** Test-time checks of a trained EIPA run: `png evaluate` options, run when `png evaluate --help` lists them. */
const PROBES = {
  'zero-gates': {
    args: ['--probe', 'zero-gates'],
    about: 'every EIPA update dropped at test time (its gates taken as 0): static prompting with the same weights',
  },
  'swap-states': { args: ['--probe', 'swap-phrases'], about: "each image's EIPA phrase states are those its own phrases get over the next record's image" },
};

const HELP = `Usage: npm run ablation -- [options]

Trains and evaluates every variant for every seed (seed s: synthetic benchmark \`png synth --seed s\`,
training seed s), then writes the tables and the figure. Rerun the same command to resume.

  --quick                the README figure: ${describePreset(PRESETS.quick)}
                         (default: ${describePreset(PRESETS.full)})
  --out DIR              output folder (default ablation-output, or ablation-quick with --quick)
  --seeds N              seeds 0..N-1
  --variants LIST        comma-separated names from --variants-file
  --variants-file FILE   JSON: name -> config fields over the base config (default examples/configs/ablation_variants.json)
  --baseline NAME        the variant every other is compared with (default static)
  --base-config FILE     (default examples/configs/png_grounding.json; png_tiny.json with --kind unary)
  --kind KIND            png synth --kind (default grounding when png synth has --kind)
  --size PX              image side of the benchmark and of training
  --train N, --val N     images per split
  --steps N              training steps per run
  --batch-size N         (default png train's)
  --lr X                 (default png train's)
  --jobs N               png processes side by side (default: available cores, at most 2)
  --backend NAME         (default wasm)
  --size-thresholds S,M  GT areas (pixels) of the small/medium/large buckets (default the demo's 600,1600 at 96×96, scaled with size²)
  --bootstrap N          image resamples of the per-seed paired bootstrap (default 1000)
  --train-fit N          also score every run on its first N training records (default 150; 0: off): AR on
                         what it trained on beside AR on val, the memorisation check
  --eval-probes LIST     test-time checks of every run with EIPA: ${Object.keys(PROBES).join(', ')} (default both; 'none'),
                         or NAME=--flag for a png evaluate flag of your own
  --report-only          run nothing; the tables from the runs that exist
  --plan                 print the plan and the estimated time, then stop
  -h, --help`;

function describePreset(p) {
  return `${p.seeds} seeds × ${p.variants.split(',').length} variants, ${p.size}×${p.size}, ${p.steps} steps, ${p.train} train / ${p.val} val images, ≤ ${p.budgetMinutes} min`;
}

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    out: { type: 'string' },
    seeds: { type: 'string' },
    variants: { type: 'string' },
    'variants-file': { type: 'string' },
    baseline: { type: 'string' },
    'base-config': { type: 'string' },
    kind: { type: 'string' },
    size: { type: 'string' },
    train: { type: 'string' },
    val: { type: 'string' },
    steps: { type: 'string' },
    'batch-size': { type: 'string' },
    lr: { type: 'string' },
    jobs: { type: 'string' },
    backend: { type: 'string' },
    'size-thresholds': { type: 'string' },
    bootstrap: { type: 'string' },
    'eval-probes': { type: 'string' },
    'train-fit': { type: 'string' },
    'report-only': { type: 'boolean' },
    plan: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}

/** Stops with a message naming what to fix (exit 2: a usage error). */
function usage(message) {
  console.error(`ablation: ${message}\nRun "npm run ablation -- --help" for usage.`);
  process.exit(2);
}

function intArg(name, fallback, min = 1) {
  const raw = args[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer ≥ ${min}, got '${raw}'`);
  return n;
}

function readJson(file, what) {
  if (!fs.existsSync(file)) usage(`${what} ${file}: no such file`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    usage(`${what} ${file}: not valid JSON (${e.message})`);
  }
}

const preset = args.quick ? PRESETS.quick : PRESETS.full;
const out = path.resolve(args.out ?? (args.quick ? 'ablation-quick' : 'ablation-output'));
const size = intArg('size', preset.size, 8);
const settings = {
  kind: synthKind(args.kind),
  size,
  train: intArg('train', preset.train),
  val: intArg('val', preset.val),
  steps: intArg('steps', preset.steps),
  batchSize: args['batch-size'] === undefined ? null : intArg('batch-size'),
  lr: args.lr ?? null,
  backend: args.backend ?? 'wasm',
};
if (settings.lr !== null && !(Number(settings.lr) > 0)) usage(`--lr must be a number > 0, got '${settings.lr}'`);
const seeds = Array.from({ length: intArg('seeds', preset.seeds) }, (_, s) => s);
const jobs = intArg('jobs', Math.min(2, os.availableParallelism()));
const resamples = intArg('bootstrap', 1000);
let sizeThresholds;
try {
  // The demo's buckets, scaled with the image area: the terciles of the grounding scenes' val segment areas at 96×96 (600, 1600 px).
  sizeThresholds = args['size-thresholds']
    ? parseSizeThresholds(args['size-thresholds'])
    : [Math.round((600 * size * size) / 96 ** 2), Math.round((1600 * size * size) / 96 ** 2)];
} catch (e) {
  usage(`--size-thresholds: ${e.message}`);
}

const baseConfigFile = path.resolve(args['base-config'] ?? path.join(HERE, 'configs', args.kind === 'unary' ? 'png_tiny.json' : 'png_grounding.json'));
const baseConfig = readJson(baseConfigFile, '--base-config');
const variantsFile = path.resolve(args['variants-file'] ?? path.join(HERE, 'configs', 'ablation_variants.json'));
const allVariants = readJson(variantsFile, '--variants-file');
const variantNames = (args.variants ?? preset.variants).split(',').map((v) => v.trim());
for (const name of variantNames) {
  if (!Object.hasOwn(allVariants, name)) usage(`--variants: no variant '${name}' in ${variantsFile} (it has ${Object.keys(allVariants).join(', ')})`);
  if (!/^[\w.-]+$/.test(name)) usage(`${variantsFile}: variant name '${name}' names a folder; use letters, digits, '_', '-' and '.' only`);
}
const baseline = args.baseline ?? 'static';
if (!variantNames.includes(baseline))
  usage(`--baseline '${baseline}' is not among --variants (${variantNames.join(', ')}); every difference is taken against it`);
// The baseline first: the tables' first column.
variantNames.sort((a, b) => (b === baseline) - (a === baseline));
const variants = variantNames.map((name) => {
  const { about = '', ...fields } = allVariants[name];
  const config = { ...baseConfig };
  for (const [key, value] of Object.entries(fields)) config[key] = isObject(value) && isObject(config[key]) ? { ...config[key], ...value } : value;
  let eipa;
  try {
    eipa = resolveEipaConfig(config.eipa ?? {});
  } catch (e) {
    usage(`${variantsFile}: variant '${name}': ${e.message}`);
  }
  return { name, about, fields, config, trainsEipa: eipa.extract || eipa.inject };
});
const probes = probeList(args['eval-probes']);
/** The memorisation check: every run scored on its first N training records (png evaluate --split train2017 --limit N). */
const trainFitRecords = intArg('train-fit', 150, 0);
const TRAIN_FIT = { name: 'train-fit', args: ['--split', 'train2017', '--limit', String(trainFitRecords)] };

function isObject(x) {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** png synth --kind: the grounding scenes when png synth has them; an explicit kind it lacks is an error. */
function synthKind(requested) {
  const help = pngHelp('synth');
  const hasKind = help.includes('--kind');
  if (requested === undefined) return hasKind && /\bgrounding\b/.test(help) ? 'grounding' : null;
  if (!hasKind)
    usage(`--kind ${requested}: this png synth has no --kind (it writes the unary scenes only); leave --kind out, or build a png with the grounding benchmark`);
  return requested;
}

function pngHelp(command) {
  const r = spawnSync(process.execPath, [PNG, command, '--help'], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`ablation: ${PNG} ${command} --help failed (${r.error?.message ?? r.stderr.trim()}); build first: npx nx run-many -t build`);
    process.exit(1);
  }
  return r.stdout;
}

/** The test-time probes to run: built-in names, NAME=--flag [value], or none. Those png evaluate lacks are skipped, with a message. */
function probeList(list = Object.keys(PROBES).join(',')) {
  if (list === 'none') return [];
  const help = pngHelp('evaluate');
  return list.split(',').flatMap((item) => {
    const [name, custom] = item.split('=');
    const probe = custom ? { args: custom.trim().split(/\s+/), about: 'a png evaluate flag given with --eval-probes' } : PROBES[name.trim()];
    if (!probe) usage(`--eval-probes: unknown probe '${name}'; use ${Object.keys(PROBES).join(', ')}, none, or NAME=--flag`);
    if (!help.includes(probe.args[0])) {
      console.log(`probe ${name}: skipped, png evaluate has no ${probe.args[0]} yet (${probe.about})`);
      return [];
    }
    return [{ name: name.trim(), ...probe }];
  });
}

// ---------------------------------------------------------------- the plan

/** png evaluate flags of a run that only needs its scores: no figures, no bootstrap intervals (the tables resample themselves). */
const SCORES_ONLY = ['--overlays', '0', '--attention-maps', '0', '--bootstrap', '0'];
const dataDir = (seed) => path.join(out, 'data', `seed${seed}`);
const runDir = (variant, seed) => path.join(out, 'runs', variant, `seed${seed}`);
const evalDir = (variant, seed, probe) => path.join(runDir(variant, seed), probe ? `eval-${probe}` : 'eval');
const configFile = (variant) => path.join(out, 'runs', variant, 'config.json');
/** A finished `png evaluate` has written predictions.json (atomically, after report.json). */
const evaluated = (variant, seed, probe) => fs.existsSync(path.join(evalDir(variant, seed, probe), 'predictions.json'));

const synthArgs = (seed) => [
  'synth',
  '--out',
  dataDir(seed),
  '--train',
  String(settings.train),
  '--val',
  String(settings.val),
  '--seed',
  String(seed),
  '--size',
  String(size),
  ...(settings.kind ? ['--kind', settings.kind] : []),
];
const trainOptions = [
  '--image-size',
  String(size),
  '--backend',
  settings.backend,
  ...(settings.batchSize ? ['--batch-size', String(settings.batchSize)] : []),
  ...(settings.lr ? ['--lr', settings.lr] : []),
];
const trainArgs = (variant, seed) => [
  'train',
  '--data',
  dataDir(seed),
  '--out',
  runDir(variant, seed),
  '--config',
  configFile(variant),
  '--steps',
  String(settings.steps),
  '--seed',
  String(seed),
  ...trainOptions,
];
const evaluateArgs = (variant, seed, probe) => [
  'evaluate',
  '--data',
  dataDir(seed),
  '--run',
  runDir(variant, seed),
  '--out',
  evalDir(variant, seed, probe?.name),
  '--backend',
  settings.backend,
  ...SCORES_ONLY,
  '--size-thresholds',
  sizeThresholds.join(','),
  ...(probe?.args ?? []),
];

/** One training and its evaluations, run in one slot; seed-major, so that the first seeds pair up early. */
const units = seeds.flatMap((seed) => variants.map((v) => ({ variant: v, seed, probes: v.trainsEipa ? probes : [] })));
/** The evaluations of a unit beyond its val evaluation: its probes, and the memorisation check when on. */
const extraEvaluations = (u) => [...u.probes, ...(trainFitRecords > 0 ? [TRAIN_FIT] : [])];

async function checkPlan() {
  // What the runs depend on; seeds, variants, jobs, probes and the tables' size buckets may change between reruns.
  const plan = { settings, base_config: baseConfig };
  const file = path.join(out, 'plan.json');
  if (fs.existsSync(file)) {
    const previous = JSON.parse(fs.readFileSync(file, 'utf8'));
    const changed = Object.keys(plan.settings)
      .filter((k) => previous.settings?.[k] !== plan.settings[k])
      .map((k) => `${k} ${previous.settings?.[k]} (now ${plan.settings[k]})`);
    if (JSON.stringify(previous.base_config) !== JSON.stringify(plan.base_config))
      changed.push(`base_config ${JSON.stringify(previous.base_config)} (now ${JSON.stringify(plan.base_config)})`);
    if (changed.length) {
      console.error(`ablation: ${file}: this folder holds an ablation with ${changed.join(', ')}; rerun with its options to resume, or choose another --out`);
      process.exit(2);
    }
  }
  await writeFileAtomic(file, `${JSON.stringify(plan, null, 2)}\n`);
  for (const v of variants) {
    if (fs.existsSync(configFile(v.name)) && fs.readFileSync(configFile(v.name), 'utf8') !== `${JSON.stringify(v.config, null, 2)}\n`) {
      console.error(
        `ablation: ${configFile(v.name)}: variant '${v.name}' was run with another config; rerun with the same variants file, or choose another --out`,
      );
      process.exit(2);
    }
    await writeFileAtomic(configFile(v.name), `${JSON.stringify(v.config, null, 2)}\n`);
  }
}

// ---------------------------------------------------------------- child processes

const children = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGTERM');
    console.log(`\n${signal}: stopped; rerun the same command to resume`);
    process.exit(130);
  });
}

/**
 * Runs `png <argv>` with its output appended to out/logs/<label>.log. Calls `onLine(line, cpuSeconds)`
 * for each line of its stderr, with the child's CPU time so far (Linux /proc; null elsewhere).
 * Resolves to the exit code.
 */
function png(argv, label, onLine) {
  const log = path.join(out, 'logs', `${label}.log`);
  fs.mkdirSync(path.dirname(log), { recursive: true });
  const sink = fs.createWriteStream(log, { flags: 'a' });
  sink.write(`$ png ${argv.join(' ')}\n`);
  const child = spawn(process.execPath, [PNG, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.stdout.pipe(sink, { end: false });
  let pending = '';
  child.stderr.on('data', (chunk) => {
    sink.write(chunk);
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) onLine?.(line, cpuSeconds(child.pid));
  });
  return new Promise((resolve) => {
    child.on('close', (code) => {
      children.delete(child);
      sink.end();
      resolve(code ?? 1);
    });
  });
}

/** User + system CPU seconds of a process (utime and stime of /proc/PID/stat, in 1/100 s ticks on Linux). */
function cpuSeconds(pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** Runs `work` on every item, `jobs` at a time. */
async function pool(items, work) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(jobs, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

const began = Date.now();
/** Seconds as m:ss or h:mm:ss. */
const formatDuration = (seconds) => formatMs(seconds * 1000);
const clock = () => new Date().toTimeString().slice(0, 8);

// ---------------------------------------------------------------- time estimate

/**
 * Seconds of one process (CPU time where it can be read, so that a busy machine does not inflate it):
 * a short training of the costliest variant on 16 narratives, timed between its progress lines
 * (s/step, and the start-up with the encoding), and an evaluation of the same narratives (two batches).
 */
async function calibrate() {
  const file = path.join(out, 'calibration.json');
  const heaviest = variants.find((v) => v.name === 'full') ?? variants[variants.length - 1];
  // What the speed depends on (not the steps or split sizes: the estimate scales with those).
  const key = { kind: settings.kind, size, batchSize: settings.batchSize, backend: settings.backend, config: heaviest.config };
  if (fs.existsSync(file)) {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (JSON.stringify(saved.key) === JSON.stringify(key)) return saved;
  }
  const steps = 12;
  const limit = Math.min(16, settings.train);
  const dir = path.join(out, 'calibration');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const calibrationConfig = path.join(dir, 'config.json');
  fs.writeFileSync(calibrationConfig, JSON.stringify(heaviest.config));
  console.log(`[${clock()}] measuring: ${steps} training steps of '${heaviest.name}' and an evaluation of ${limit} narratives`);
  // Times at png's progress lines on stderr: every 10 % of the steps ('train 1/12' after the first step); 'evaluate d/16' per batch.
  const marks = {};
  const track = (started) => (line, cpu) => {
    const wall = (Date.now() - started) / 1000;
    const progress = line.match(/^(train|evaluate) (\d+)\//);
    if (progress) {
      const at = { done: Number(progress[2]), cpu, wall };
      marks[`${progress[1]}First`] ??= at;
      marks[`${progress[1]}Last`] = at;
    }
  };
  const logFile = path.join(out, 'logs', 'calibration.log');
  const trainCode = await png(
    [
      'train',
      '--data',
      dataDir(seeds[0]),
      '--out',
      path.join(dir, 'run'),
      '--config',
      calibrationConfig,
      '--steps',
      String(steps),
      '--limit',
      String(limit),
      '--warmup-steps',
      '0',
      '--seed',
      '0',
      ...trainOptions,
      '--checkpoint-every',
      String(steps),
    ],
    'calibration',
    track(Date.now()),
  );
  if (trainCode !== 0) throw new Error(`the calibration training failed (exit ${trainCode}); see ${logFile}`);
  const evalCode = await png(
    [
      'evaluate',
      '--data',
      dataDir(seeds[0]),
      '--split',
      'train2017',
      '--run',
      path.join(dir, 'run'),
      '--out',
      path.join(dir, 'eval'),
      '--limit',
      String(limit),
      '--backend',
      settings.backend,
      ...SCORES_ONLY,
    ],
    'calibration',
    track(Date.now()),
  );
  if (evalCode !== 0) throw new Error(`the calibration evaluation failed (exit ${evalCode}); see ${logFile}`);
  const { trainFirst, trainLast, evaluateFirst, evaluateLast } = marks;
  if (!trainFirst || !evaluateFirst || trainLast.done === trainFirst.done || evaluateLast.done === evaluateFirst.done) {
    throw new Error(`the calibration runs did not print the progress lines it times ('train d/n', 'evaluate d/n'); see ${logFile}`);
  }
  const cpu = [trainFirst, trainLast, evaluateFirst, evaluateLast].every((m) => m.cpu !== null);
  const at = (m) => (cpu ? m.cpu : m.wall);
  const rate = (first, last, time = at) => (time(last) - time(first)) / (last.done - first.done);
  const secondsPerStep = rate(trainFirst, trainLast);
  const evaluatePerNarrative = rate(evaluateFirst, evaluateLast);
  const measured = {
    key,
    clock: cpu ? 'CPU seconds of the process' : 'wall seconds',
    secondsPerStep,
    wallSecondsPerStep: rate(trainFirst, trainLast, (m) => m.wall),
    /** Loading the backbone, encoding the calibration's narratives and the first step's warm-up (one step's time taken off). */
    trainStartSeconds: at(trainFirst) - secondsPerStep,
    evaluateLoadSeconds: Math.max(0, at(evaluateFirst) - evaluateFirst.done * evaluatePerNarrative),
    evaluateSecondsPerNarrative: evaluatePerNarrative,
    narratives: limit,
    load: os.loadavg()[0],
  };
  await writeFileAtomic(file, `${JSON.stringify(measured, null, 2)}\n`);
  return measured;
}

/** Narratives of a split of the first seed's benchmark (an image may have several). */
const narratives = (split) => JSON.parse(fs.readFileSync(path.join(dataDir(seeds[0]), 'annotations', `png_coco_${split}.json`), 'utf8')).length;

/** Seconds of a training, an evaluation, and of all that remains on `jobs` cores, from the calibration. */
function estimate(c) {
  // Encoding a training narrative costs at most what evaluating one does (evaluation encodes it the same way, then runs the model).
  const trainSeconds =
    c.trainStartSeconds + c.evaluateSecondsPerNarrative * Math.max(0, narratives('train2017') - c.narratives) + c.secondsPerStep * settings.steps;
  const evaluateSeconds = c.evaluateLoadSeconds + c.evaluateSecondsPerNarrative * narratives('val2017');
  let total = 0;
  for (const u of units) {
    if (!evaluated(u.variant.name, u.seed)) total += trainSeconds + evaluateSeconds;
    total += u.probes.filter((p) => !evaluated(u.variant.name, u.seed, p.name)).length * evaluateSeconds;
    if (trainFitRecords > 0 && !evaluated(u.variant.name, u.seed, TRAIN_FIT.name))
      total += c.evaluateLoadSeconds + c.evaluateSecondsPerNarrative * Math.min(trainFitRecords, narratives('train2017'));
  }
  return { trainSeconds, evaluateSeconds, total: total / jobs };
}

// ---------------------------------------------------------------- the runs

async function runAll() {
  await checkPlan();
  // --plan needs the first seed's benchmark only (the calibration trains on it).
  const toSynth = (args.plan ? seeds.slice(0, 1) : seeds).filter((seed) => !fs.existsSync(`${dataDir(seed)}.done`));
  console.log(`[${clock()}] synthetic benchmarks: ${toSynth.length ? `writing seeds ${toSynth.join(', ')}` : 'all written'}`);
  const failures = [];
  await pool(toSynth, async (seed) => {
    const code = await png(synthArgs(seed), `synth-seed${seed}`);
    if (code === 0) await writeFileAtomic(`${dataDir(seed)}.done`, `${JSON.stringify(synthArgs(seed))}\n`);
    else failures.push(`png synth seed ${seed} (exit ${code}; log ${path.join(out, 'logs', `synth-seed${seed}.log`)})`);
  });
  if (failures.length) throw new Error(`could not write the benchmarks: ${failures.join('; ')}`);

  const todo = units.filter((u) => !evaluated(u.variant.name, u.seed) || extraEvaluations(u).some((p) => !evaluated(u.variant.name, u.seed, p.name)));
  if (todo.length === 0) {
    console.log(`[${clock()}] every run is done`);
    return failures;
  }
  const c = await calibrate();
  const e = estimate(c);
  const load = os.loadavg()[0];
  const cores = os.availableParallelism();
  console.log(
    `measured ${c.secondsPerStep.toFixed(2)} s/step (${c.clock}, at load ${c.load.toFixed(1)}; ${c.wallSecondsPerStep.toFixed(2)} s/step wall), ` +
      `a run ≈ ${formatDuration(e.trainSeconds)} training (its encoding at the evaluation's cost per narrative, an upper bound) + ${formatDuration(e.evaluateSeconds)} evaluation` +
      `\n${todo.length} of ${units.length} runs to do, ${jobs} at a time: estimated ${formatDuration(e.total)}` +
      (e.total > preset.budgetMinutes * 60
        ? `, over the ${preset.budgetMinutes}-min budget of ${args.quick ? '--quick' : 'the full analysis'}`
        : `, within the ${preset.budgetMinutes}-min budget`) +
      (Math.max(load, c.load) > cores
        ? `; the machine is busy (load ${load.toFixed(1)} on ${cores} cores): wall time will be longer, and CPU time measured on a busy machine is high too (0.78 against 0.57 s per step idle at 64×64)`
        : ''),
  );
  if (args.plan) return [];

  let done = 0;
  await pool(todo, async (unit) => {
    const { variant, seed } = unit;
    const label = `${variant.name}-seed${seed}`;
    const steps = [
      ...(evaluated(variant.name, seed)
        ? []
        : [
            ['train', trainArgs(variant.name, seed)],
            ['evaluate', evaluateArgs(variant.name, seed)],
          ]),
      ...extraEvaluations(unit)
        .filter((p) => !evaluated(variant.name, seed, p.name))
        .map((p) => [`evaluate ${p.name}`, evaluateArgs(variant.name, seed, p)]),
    ];
    for (const [what, argv] of steps) {
      const start = Date.now();
      console.log(`[${clock()}] ${what} ${variant.name} seed ${seed}`);
      const code = await png(argv, label);
      if (code !== 0) {
        failures.push(`${what} ${variant.name} seed ${seed} (exit ${code}; log ${path.join(out, 'logs', `${label}.log`)})`);
        return;
      }
      console.log(`[${clock()}] ${what} ${variant.name} seed ${seed}: done in ${formatDuration((Date.now() - start) / 1000)}`);
    }
    done++;
    console.log(`[${clock()}] ${done}/${todo.length} runs done, ${formatDuration((Date.now() - began) / 1000)} so far`);
  });
  return failures;
}

// ---------------------------------------------------------------- tables and figure

/** Each finished evaluation's per-phrase scores (predictions.json against its seed's ground truth), checked against its report.json. */
function finishedRuns() {
  const runs = [];
  for (const seed of seeds) {
    const models = units
      .filter((u) => u.seed === seed)
      .flatMap((u) => [
        { name: u.variant.name, dir: evalDir(u.variant.name, seed) },
        ...u.probes.map((p) => ({ name: `${u.variant.name} · ${p.name}`, dir: evalDir(u.variant.name, seed, p.name) })),
      ])
      .filter((m) => fs.existsSync(path.join(m.dir, 'predictions.json')));
    if (models.length === 0) continue;
    const gt = PngGroundTruth.load(path.join(dataDir(seed), 'annotations'), 'val2017');
    for (const { name, dir } of models) {
      const file = path.join(dir, 'predictions.json');
      const evaluator = evaluatePredictions(gt, parsePredictions(JSON.parse(fs.readFileSync(file, 'utf8')), file));
      const reported = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')).average_recall.overall;
      const rescored = evaluator.evaluate().overall.averageRecall;
      if (reported !== rescored)
        throw new Error(
          `${file}: re-scored AR ${rescored} differs from its report.json's ${reported}; the ground truth in ${dataDir(seed)} changed since the run, remove the run's eval folder to evaluate it again`,
        );
      runs.push({ name, seed, evaluator });
    }
  }
  return runs;
}

async function writeReport() {
  const runs = finishedRuns();
  if (runs.length === 0) {
    console.log('no finished evaluation yet: nothing to tabulate');
    return;
  }
  const names = variants.map((v) => v.name);
  const comparisons = names.filter((n) => n !== baseline).map((n) => ({ name: `${n} − ${baseline}`, a: n, b: baseline }));
  const probeComparisons = units
    .filter((u) => u.seed === seeds[0])
    .flatMap((u) =>
      u.probes.map((p) => ({ name: `${u.variant.name} · ${p.name} − ${u.variant.name}`, a: `${u.variant.name} · ${p.name}`, b: u.variant.name })),
    );
  const summary = stats.summarizeAblation(runs, { comparisons: [...comparisons, ...probeComparisons], sizeThresholds, resamples });
  const ran = (name) => summary.names.includes(name);
  const seedsRun = (name) => Object.keys(summary.averageRecall[name]?.overall?.perSeed ?? {}).length;
  const shown = names.filter(ran);
  const ci = stats.confidenceLabel(summary);
  const [small, medium] = sizeThresholds;
  const lines = [
    '# Component analysis',
    '',
    `${settings.kind ? `\`png synth --kind ${settings.kind}\`` : '`png synth` (unary scenes)'}, ${size}×${size}, ${settings.train} train / ${settings.val} val images per seed; ` +
      `${settings.steps} training steps per run${settings.batchSize ? `, batch ${settings.batchSize}` : ''}${settings.lr ? `, lr ${settings.lr}` : ''}, ${settings.backend}, embedded backbone. ` +
      `Seed s: benchmark \`--seed s\` and training \`--seed s\`. Runs finished: ${shown.map((n) => `${n} ${seedsRun(n)}/${seeds.length}`).join(', ')}.`,
    '',
    `| variant | config over ${path.basename(baseConfigFile)} | what it is |`,
    '|---|---|---|',
    ...variants.map((v) => `| ${v.name} | \`${JSON.stringify(v.fields)}\` | ${v.about} |`),
    '',
    `## Average Recall (%): mean over seeds ± half-width of the ${ci} interval (Student t, seeds − 1 degrees of freedom)`,
    '',
    `Groups: the five of the paper; GT area small < ${small} ≤ medium < ${medium} ≤ large (pixels); each phrase type. A value without ± comes from one seed.`,
    '',
    stats.formatAverageRecallTable(summary, shown),
    '',
    `## Paired differences vs ${baseline} (AR points): mean over seeds of (variant − ${baseline}) [${ci} t interval over seeds]`,
    '',
    `Within a seed both runs share the benchmark and the training seed, so the difference is paired.`,
    '',
    stats.formatDifferenceTable(
      summary,
      comparisons.filter((c) => ran(c.a)).map((c) => c.name),
    ),
    '',
    `## Paired bootstrap within each seed (images resampled ${resamples} times, phrases of one image together)`,
    '',
    `Each cell: seed ${seeds[0]}'s ${ci} percentile interval of (variant − ${baseline}) · the median half-width of the per-seed intervals · how many seeds' intervals lie above (↑) / below (↓) 0. Every seed's interval is in ablation.json.`,
    '',
    stats.formatBootstrapTable(
      summary,
      comparisons.filter((c) => ran(c.a)).map((c) => c.name),
    ),
    '',
    '## Overall AR (%) per seed',
    '',
    stats.formatPerSeedTable(summary, shown),
    '',
  ];
  const probed = summary.names.filter((n) => n.includes(' · '));
  if (probed.length) {
    lines.push(
      '## Is dynamic prompting what it claims? Test-time probes of the runs with EIPA',
      '',
      ...probes.map((p) => `- ${p.name}: ${p.about} (\`png evaluate ${p.args.join(' ')}\`)`),
      '',
      stats.formatAverageRecallTable(
        summary,
        summary.names.filter((n) => probed.includes(n) || probed.some((p) => p.startsWith(`${n} · `))),
      ),
      '',
      `Paired differences (probe − the same run unprobed), mean over seeds [${ci} t interval]:`,
      '',
      stats.formatDifferenceTable(
        summary,
        probeComparisons.filter((c) => ran(c.a)).map((c) => c.name),
      ),
      '',
    );
  } else if (args['eval-probes'] !== 'none') {
    lines.push('Test-time probes (zeroed EIPA gates, swapped phrase states): not run, this `png evaluate` does not offer them yet.', '');
  }
  const fit = stats.formatTrainFitTable(trainFitPairs(shown));
  if (fit)
    lines.push(
      `## Memorisation check: AR (%) on the first ${trainFitRecords} training records beside val, mean over seeds`,
      '',
      'Each cell: train / val (val − train). A model far better on what it trained on than on val has learnt those scenes, not the rule (`png evaluate --split train2017 --limit N`; from each report.json, no intervals).',
      '',
      fit,
      '',
    );
  lines.push('![AR curves](ablation_curves.svg)', '');
  const markdown = lines.join('\n');
  await writeFileAtomic(path.join(out, 'ablation.md'), markdown);
  const { curves, thresholds, ...numbers } = summary; // the curves are in the figure
  await writeFileAtomic(
    path.join(out, 'ablation.json'),
    `${JSON.stringify({ settings, size_thresholds: sizeThresholds, variants: variants.map(({ name, fields }) => ({ name, fields })), ...numbers }, null, 1)}\n`,
  );
  await writeFileAtomic(path.join(out, 'ablation_curves.svg'), renderRecallCurvePanelsSvg(stats.curvePanels(summary, shown), { columns: 4 }));
  console.log(`\n${markdown}\nwritten: ${['ablation.md', 'ablation.json', 'ablation_curves.svg'].map((f) => path.join(out, f)).join(', ')}`);
}

/** Per variant, the report.json pairs (train-fit, val) of the seeds that have both: the memorisation table's input. */
function trainFitPairs(names) {
  const read = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
  return Object.fromEntries(
    names.map((name) => [
      name,
      seeds
        .filter((seed) => evaluated(name, seed) && evaluated(name, seed, TRAIN_FIT.name))
        .map((seed) => ({ train: read(evalDir(name, seed, TRAIN_FIT.name)), val: read(evalDir(name, seed)) })),
    ]),
  );
}

// ---------------------------------------------------------------- main

console.log(
  `ablation in ${out}: ${seeds.length} seed${seeds.length > 1 ? 's' : ''} × ${variants.length} variants (${variantNames.join(', ')}), ` +
    `${settings.kind ?? 'unary'} scenes ${size}×${size}, ${settings.train} train / ${settings.val} val images, ${settings.steps} steps, ${jobs} jobs` +
    (probes.length ? `; probes ${probes.map((p) => p.name).join(', ')} on the runs with EIPA` : ''),
);
try {
  const failures = args['report-only'] ? [] : await runAll();
  if (!args.plan) await writeReport();
  if (failures.length) {
    console.error(`\n${failures.length} step(s) failed (the tables above leave them out; rerun to retry):\n${failures.map((f) => `  ${f}`).join('\n')}`);
    process.exit(1);
  }
} catch (e) {
  for (const child of children) child.kill('SIGTERM');
  console.error(`ablation: ${e.message}`);
  process.exit(1);
}
