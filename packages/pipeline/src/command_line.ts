/** The `png` command line: synth, train, evaluate, baseline, ground, pretrain, sample. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { BACKENDS, parseJsonObject, readInputFile, setBackend, wasmComputePath, type BackendName, type LoadProgress } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import type { EipaGateMagnitudes } from '@png/eipa';
import { createProgressBar, formatDuration, writeFileAtomic, type ProgressBar } from '@png/node-utils';
import {
  GROUNDING_DEFAULT_SIZE,
  decodeImage,
  encodePng,
  generateSyntheticBenchmark,
  type DroppedRecord,
  type RgbImage,
  type SceneKind,
  type SkippedRecord,
} from '@png/png-data';
import {
  COCO_SIZE_THRESHOLDS,
  DEFAULT_GROUP_BY,
  NARRATIVE_DROP_REASONS,
  PHRASE_GROUPS,
  SIZE_BUCKETS,
  describeDrops,
  encodeRle,
  formatMetricsTable,
  formatPercent,
  parseSizeThresholds,
  summarizeMetrics,
  type PngEvaluateOptions,
  type PngMetrics,
  type PngSummary,
} from '@png/png-metrics';
import { DEFAULT_PRETRAIN_SETTINGS, pretrainBackbone, type PretrainProgress, type PretrainSettings } from '@png/text-to-image-pretraining';
import { BASELINE_RULES, evaluateBaselines, type BaselineResult, type BaselineRule } from './baselines';
import { evaluateOnBenchmark, mergeEvaluationShards, type EvaluationShard } from './benchmark_evaluation';
import { DEFAULT_TRAINING_SETTINGS, trainOnBenchmark, type TrainingSettings } from './benchmark_training';
import { groundNarrative } from './ground_narrative';
import { PngGrounder, type EipaProbe, type PngGrounderConfig } from './png_grounder';
import { enlargeImage, renderOverlay, tileImages } from './visualize';

/** Where the command line writes, and the embedded default backbone folder. */
export interface CliEnvironment {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown; isTTY?: boolean };
  /** The pipeline folder `--model` defaults to. */
  readonly embeddedModel: string;
}

class UsageError extends Error {}

const COMMON = `  --model DIR          diffusers pipeline folder of the frozen backbone (unet/, vae/, text_encoder/,
                       tokenizer/); default: the embedded tiny model
  --backend NAME       ${BACKENDS.join(' | ')} (default wasm)
  --progress           progress bars even when stderr is not a terminal
  -h, --help           show this help`;

const HELP: Record<string, string> = {
  main: `Usage: png <command> [options]

Panoptic Narrative Grounding with a frozen text-to-image diffusion model (EIPA + MLMA).

Commands:
  synth      write a synthetic PNG benchmark (images, panoptic PNGs and JSON, narratives)
  train      train EIPA + MLMA + the decoder on a benchmark split (resumable)
  evaluate   Average Recall of a trained model on a split, with overlays and attention maps
  ground     ground a free-form narrative on an image: overlay PNG + masks as RLE JSON
  pretrain   pretrain a tiny text-to-image backbone (VAE, UNet, text encoder) on synthetic scenes
  sample     generate images from prompts with a backbone (DDIM, classifier-free guidance)
  baseline   Average Recall of trivial rules on a split (whole image, colour lookup, text prior, perfect mask)

Run "png <command> --help" for its options.`,
  synth: `Usage: png synth --out DIR [--kind unary|grounding] [--train N] [--val N] [--seed S] [--size H]

Writes a synthetic benchmark in the layout of the real one (images/, annotations/): scenes of
shapes on stuff regions with Localized-Narratives-like captions. Deterministic from --seed.

  --out DIR            benchmark folder to write
  --kind KIND          unary: every thing phrase is solved by its own colour and shape (the control;
                       the default); grounding: twins told apart by relation, size or order, colour ×
                       shape binding, plural subsets, occlusion; each phrase carries its phrase_type
  --train N            images of train2017 (default 400)
  --val N              images of val2017 (default 60)
  --seed S             (default 0)
  --size H             image side in pixels (default 64 for unary, ${GROUNDING_DEFAULT_SIZE[0]} for grounding)
  -h, --help           show this help`,
  train: `Usage: png train --data DIR --out RUN [options]

Trains the grounding model (EIPA + MLMA + decoder) on the frozen backbone. RUN is resumable:
rerunning the same command continues from its last checkpoint; RUN/grounder/ holds the result.

  --data DIR           benchmark folder (see png synth)
  --split NAME         (default train2017)
  --out RUN            run folder
  --config FILE        the model's JSON config (PngGrounderConfig: eipa, mlma, decoder, ...);
                       ablations are configs, e.g. {"eipa": {"extract": false, "inject": false,
                       "dynamic_prompt": false}} is static prompting
  --steps N            (default ${DEFAULT_TRAINING_SETTINGS.steps})
  --batch-size N       (default ${DEFAULT_TRAINING_SETTINGS.batch_size})
  --lr X               peak learning rate (default ${DEFAULT_TRAINING_SETTINGS.lr})
  --warmup-steps N     (default ${DEFAULT_TRAINING_SETTINGS.warmup_steps})
  --gate-lr-multiplier X
                       factor on the learning rate of EIPA's gates (default ${DEFAULT_TRAINING_SETTINGS.gate_lr_multiplier});
                       the progress lines show the gates' mean |tanh g| per kind (kept per step in the checkpoints)
  --image-size S       canvas side images are letterboxed to (default ${DEFAULT_TRAINING_SETTINGS.image_size})
  --seed S             initialisation and data order (default ${DEFAULT_TRAINING_SETTINGS.seed})
  --checkpoint-every N (default ${DEFAULT_TRAINING_SETTINGS.checkpoint_every})
  --limit N            train on the first N grounded records only
${COMMON}`,
  evaluate: `Usage: png evaluate --data DIR --run RUN [--out DIR] [options]

Grounds every narrative of a split with the model of RUN and scores it with the PNG Average
Recall; writes report.json, ar_curves.svg, predictions.json, overlays/ and attention/ to --out.

  --data DIR           benchmark folder
  --split NAME         (default val2017)
  --run RUN            a finished png train run folder
  --out DIR            output folder (default RUN/eval-<split>)
  --overlays N         samples drawn as overlays (default 8)
  --attention-maps N   samples whose EIPA attention is drawn (default 4)
  --limit N            evaluate the first N grounded records only
  --group-by KEYS      comma-separated png_coco chunk keys whose values group the phrases
                       (default ${DEFAULT_GROUP_BY.join(',')})
  --size-thresholds S,M
                       GT area bounds in pixels of the size groups: small < S <= medium < M
                       (default ${COCO_SIZE_THRESHOLDS.join(',')}, COCO's)
  --bootstrap N        image resamples for the 95% intervals of the AR (default 1000; 0: none)
  --probe NAME         check EIPA at test time (output default RUN/eval-<split>-<probe>):
                       zero-gates    every EIPA update dropped: static prompting, same weights
                       swap-phrases  each image's EIPA phrase states are those its phrases get
                                     over the next record's image
  --json               print the summary as JSON
  --shard K/N          ground only the grounded records K, K+N, K+2N, ... (K = 0..N-1, 0-based as a
                       Kubernetes JOB_COMPLETION_INDEX or a Slurm array 0-(N-1)) and write
                       shard-K-of-N.json (evaluator states, predictions, settings) to --out
                       instead of report.json, ar_curves.svg and predictions.json
${COMMON}

Usage: png evaluate --merge --out DIR SHARD_FILE... [--json]

Merges the shard-K-of-N.json files of all N shards of one sharded evaluation (any order) into the
report.json, ar_curves.svg and predictions.json that the unsharded run writes, byte for byte.`,
  baseline: `Usage: png baseline --data DIR [--split NAME] [--rule RULE ...] [--stride S ...] [options]

Scores rules that learn nothing with the PNG Average Recall, overall / things / stuff / singulars /
plurals, per size bucket and per phrase_type (synthetic grounding scenes):
  whole-image     every phrase is the whole image
  colour-lookup   the pixels within an RGB distance of the colour the phrase names (a stuff noun's, else a colour word's)
  text-prior      the mean ground-truth mask of the phrase's words on the training split, thresholded
  perfect-mask    the ground truth area-averaged over stride×stride cells of the model's canvas and
                  brought back as predictions are: the resolution ceiling of a model at that stride

  --data DIR           benchmark folder
  --split NAME         (default val2017)
  --rule RULE          one of ${BASELINE_RULES.join(', ')}; repeat for several (default: all)
  --stride S           mask stride of perfect-mask in canvas pixels; repeat for several (default 4)
  --image-size S       canvas side of perfect-mask (default: the image's longer side, rounded up to a multiple of 8)
  --train-split NAME   split the text prior learns from (default train2017)
  --colour-distance D  RGB distance of colour lookup (default 40)
  --group-by KEYS      comma-separated png_coco chunk keys whose values group the phrases
                       (default ${DEFAULT_GROUP_BY.join(',')})
  --size-thresholds S,M
                       GT area bounds in pixels of the size groups: small < S <= medium < M
                       (default ${COCO_SIZE_THRESHOLDS.join(',')}, COCO's; 31,277 for 96×96 grounding scenes)
  --limit N            score the first N records only
  --json               print the scores as JSON
  --backend NAME       ${BACKENDS.join(' | ')} (default wasm)
  -h, --help           show this help`,
  ground: `Usage: png ground --image FILE --caption TEXT --run RUN [--phrase TEXT ...] [--out DIR] [options]

Grounds a free-form narrative: its noun phrases (found automatically, or given with --phrase) each
get a mask. Writes overlay.png (masks over the image with a phrase legend) and masks.json (COCO RLE
per phrase).

  --image FILE         JPEG or PNG
  --caption TEXT       the narrative
  --phrase TEXT        a phrase to ground, as written in the caption (repeatable, in caption order;
                       each is taken at its first occurrence after the previous one)
  --run RUN            a finished png train run folder
  --out DIR            output folder (default ./png-ground)
${COMMON}`,
  pretrain: `Usage: png pretrain --out DIR [options]

Pretrains a tiny Stable-Diffusion-architecture backbone from scratch on synthetic scenes and their
narratives: a BPE vocabulary, the VAE (L1 + KL), then the UNet and the CLIP text encoder jointly
(DDPM ε-prediction, SD's scaled-linear schedule, caption dropout for guidance). DIR becomes a
diffusers pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) for --model.
Deterministic from --seed; rerunning an interrupted command resumes it (DIR.work/).

  --out DIR            pipeline folder to write
  --seed S             (default ${DEFAULT_PRETRAIN_SETTINGS.seed})
  --scenes N           synthetic training scenes (default ${DEFAULT_PRETRAIN_SETTINGS.scenes})
  --vae-steps N        (default ${DEFAULT_PRETRAIN_SETTINGS.vae_steps})
  --unet-steps N       (default ${DEFAULT_PRETRAIN_SETTINGS.unet_steps})
  --settings FILE      JSON with any other PretrainSettings field (batch sizes, learning rates, ...)
  --backend NAME       ${BACKENDS.join(' | ')} (default wasm)
  --progress           progress bars even when stderr is not a terminal
  -h, --help           show this help`,
  sample: `Usage: png sample --prompt TEXT [--prompt TEXT ...] --out FILE [options]

Generates an image per prompt with the backbone (DDIM sampling with classifier-free guidance) and
writes them as one PNG (side by side, each under its prompt, when there are several).

  --prompt TEXT        what to draw (repeat for several images)
  --out FILE           PNG to write
  --negative TEXT      what to steer away from (default: the empty prompt)
  --steps N            DDIM steps (default 50)
  --guidance X         guidance scale; 1 turns guidance off (default 7.5)
  --seed S             seed of the initial noise (default 0)
  --scale N            enlarge the output N× (nearest pixel) for viewing (default 1)
  --columns N          images per row when there are several (default: all in one row)
${COMMON}`,
};

/** Runs `png <argv>`; resolves to the exit code (0 ok, 1 error, 2 usage). */
export async function main(argv: readonly string[], env: CliEnvironment): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '-h' || command === '--help') {
      env.stdout.write(`${HELP.main}\n`);
      return command === undefined ? 2 : 0;
    }
    const run = { synth, train, evaluate, baseline, ground, pretrain, sample }[command];
    if (!run || !Object.hasOwn(HELP, command))
      throw new UsageError(`unknown command '${command}'; expected synth, train, evaluate, baseline, ground, pretrain or sample`);
    if (rest.includes('-h') || rest.includes('--help')) {
      env.stdout.write(`${HELP[command]}\n`);
      return 0;
    }
    await run(rest, env);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      env.stderr.write(
        `png${command && Object.hasOwn(HELP, command) ? ` ${command}` : ''}: ${(e as Error).message}\nRun "png${command && Object.hasOwn(HELP, command) ? ` ${command}` : ''} --help" for usage.\n`,
      );
      return 2;
    }
    env.stderr.write(`png ${command}: ${(e as Error).message}\n`);
    return 1;
  }
}

type Spec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;
const MODEL_OPTIONS: Spec = { model: { type: 'string' }, backend: { type: 'string' }, progress: { type: 'boolean' } };

function parse(args: readonly string[], spec: Spec, required: readonly string[]): Record<string, string | boolean | (string | boolean)[] | undefined> {
  const { values, positionals } = parseArgs({ args: [...args], options: spec, strict: true, allowPositionals: true });
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  for (const key of required) if (values[key] === undefined) throw new UsageError(`--${key} is required`);
  return values;
}

/** A non-negative integer option, or its default. */
function intOption(values: Record<string, unknown>, key: string, fallback: number, min = 0): number {
  const raw = values[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer ≥ ${min}, got '${raw}'`);
  return n;
}

function numberOption(values: Record<string, unknown>, key: string, fallback: number): number {
  const raw = values[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${key} must be a number > 0, got '${raw}'`);
  return n;
}

async function useBackend(values: Record<string, unknown>): Promise<BackendName> {
  const backend = (values.backend as string | undefined) ?? 'wasm';
  if (!BACKENDS.includes(backend as BackendName)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  await setBackend(backend as BackendName);
  return backend as BackendName;
}

async function loadBackbone(values: Record<string, unknown>, env: CliEnvironment, options: { vaeParts?: 'encoder' | 'all' } = {}): Promise<DiffusionBackbone> {
  const backend = await useBackend(values);
  const model = (values.model as string | undefined) ?? env.embeddedModel;
  const loading = loadingBars(env, values, model);
  const backbone = await DiffusionBackbone.fromPretrained(model, { vaeParts: options.vaeParts, progressCallback: loading.progressCallback });
  loading.finish();
  env.stderr.write(
    `backbone ${model === env.embeddedModel ? 'embedded tiny model' : model} (UNet ${backbone.unet.numParameters().toLocaleString()} parameters, frozen) on ${backend}${backend === 'wasm' ? `: ${wasmComputePath()}` : ''}\n`,
  );
  return backbone;
}

/**
 * Says which bad records a job left out (the loader skips them, naming the record and field) and how
 * many narratives the official pre-processing drops, per reason, with the first of each.
 */
function reportLeftOut(env: CliEnvironment, skipped: readonly SkippedRecord[], dropped: readonly DroppedRecord[]): void {
  if (skipped.length > 0)
    env.stderr.write(`${skipped.length} bad record${skipped.length > 1 ? 's' : ''} skipped:\n${skipped.map((s) => `  ${s.reason}\n`).join('')}`);
  if (dropped.length === 0) return;
  const firsts = NARRATIVE_DROP_REASONS.flatMap((reason) => dropped.find((d) => d.reason === reason) ?? []);
  env.stderr.write(`${describeDrops(dropped)}; the first:\n${firsts.map((d) => `  ${d.message}\n`).join('')}`);
}

/**
 * On a terminal (or with --progress), a bar per weights file of the backbone's load, in kB read
 * (the VAE's stops short: only its encoder is read); otherwise nothing.
 */
function loadingBars(env: CliEnvironment, values: Record<string, unknown>, model: string): { progressCallback?: (p: LoadProgress) => void; finish(): void } {
  if (values.progress !== true && env.stderr.isTTY !== true) return { finish() {} };
  let file: string | undefined;
  let bar: ProgressBar | undefined;
  return {
    progressCallback({ file: next, loaded, total }) {
      if (next !== file) {
        bar?.finish();
        file = next;
        bar = createProgressBar(env.stderr, Math.ceil(total / 1024), `load ${path.relative(model, next)} (kB)`);
      }
      bar?.update(Math.ceil(loaded / 1024));
    },
    finish: () => bar?.finish(),
  };
}

/** A progress bar on a terminal (or with --progress); otherwise a line every 10 %. */
function progress(env: CliEnvironment, values: Record<string, unknown>, total: number, label: string, start = 0): ProgressBar {
  if (values.progress === true || env.stderr.isTTY === true) return createProgressBar(env.stderr, total, label, { start });
  let shown = -1;
  let last = start;
  let lastDetail: string | undefined;
  const line = (done: number, detail?: string) => env.stderr.write(`${label} ${done}/${total}${detail ? ` ${detail}` : ''}\n`);
  return {
    update(done, detail) {
      [last, lastDetail] = [done, detail];
      const tenth = Math.floor((10 * done) / Math.max(1, total));
      if (tenth !== shown) {
        shown = tenth;
        line(done, detail);
      }
    },
    finish() {
      if (shown !== 10) line(last, lastDetail);
    },
  };
}

async function synth(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      out: { type: 'string' },
      kind: { type: 'string' },
      train: { type: 'string' },
      val: { type: 'string' },
      seed: { type: 'string' },
      size: { type: 'string' },
    },
    ['out'],
  );
  const kind = (v.kind as string | undefined) ?? 'unary';
  if (kind !== 'unary' && kind !== 'grounding') throw new UsageError(`--kind must be unary or grounding, got '${kind}'`);
  const size = intOption(v, 'size', kind === 'unary' ? 64 : GROUNDING_DEFAULT_SIZE[0], 8);
  const result = await generateSyntheticBenchmark(v.out as string, {
    kind: kind as SceneKind,
    seed: intOption(v, 'seed', 0),
    train: intOption(v, 'train', 400),
    val: intOption(v, 'val', 60),
    size: [size, size],
  });
  env.stdout.write(
    `wrote a synthetic PNG benchmark (${kind} scenes) to ${result.root}: ${result.splits.train2017.length} train and ${result.splits.val2017.length} val images (${size}×${size})\n`,
  );
}

/** The JSON object in `file` (a command-line option's value); errors name the option and file. */
function readJsonFile(file: string, option: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`${option} ${file}: no such file`);
  return parseJsonObject(fs.readFileSync(file, 'utf8'), `${option} ${file}`);
}

async function train(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      ...MODEL_OPTIONS,
      data: { type: 'string' },
      split: { type: 'string' },
      out: { type: 'string' },
      config: { type: 'string' },
      steps: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      'warmup-steps': { type: 'string' },
      'gate-lr-multiplier': { type: 'string' },
      'image-size': { type: 'string' },
      seed: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      limit: { type: 'string' },
    },
    ['data', 'out'],
  );
  const d = DEFAULT_TRAINING_SETTINGS;
  const steps = intOption(v, 'steps', d.steps, 1);
  const training: TrainingSettings = {
    steps,
    batch_size: intOption(v, 'batch-size', d.batch_size, 1),
    lr: numberOption(v, 'lr', d.lr),
    warmup_steps: intOption(v, 'warmup-steps', Math.min(d.warmup_steps, Math.floor(steps / 10))),
    weight_decay: d.weight_decay,
    clip_grad_norm: d.clip_grad_norm,
    gate_lr_multiplier: numberOption(v, 'gate-lr-multiplier', d.gate_lr_multiplier),
    image_size: intOption(v, 'image-size', d.image_size, 8),
    seed: intOption(v, 'seed', d.seed),
    checkpoint_every: intOption(v, 'checkpoint-every', d.checkpoint_every, 1),
    limit: v.limit === undefined ? null : intOption(v, 'limit', 1, 1),
  };
  const config = v.config === undefined ? {} : (readJsonFile(v.config as string, '--config') as Partial<PngGrounderConfig>);
  const backbone = await loadBackbone(v, env);
  let bar: ProgressBar | undefined;
  try {
    const result = await trainOnBenchmark({
      data: v.data as string,
      split: v.split as string | undefined,
      out: v.out as string,
      backbone,
      config,
      training,
      onProgress: (p) => {
        if (p.phase === 'encode') {
          if (p.done === 0)
            env.stderr.write(
              `encoding ${p.total} training narratives with the frozen VAE and text encoder, each image letterboxed to ${training.image_size}×${training.image_size} (--image-size)\n`,
            );
          return;
        }
        bar ??= progress(env, v, p.total, 'train', p.done - 1);
        bar.update(p.done, `loss ${p.loss?.toFixed(4)} lr ${p.lr?.toExponential(1)}${formatGates(p.gates)}`);
      },
    });
    bar?.finish();
    reportLeftOut(env, result.skipped, result.dropped);
    const last = result.losses.slice(-20);
    const first = result.losses.slice(0, 20);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const gates = formatGates(result.gates[result.gates.length - 1]);
    env.stdout.write(
      (result.resumedFrom === training.steps ? `the run in ${v.out} had already finished its ${training.steps} steps\n` : '') +
        `trained ${training.steps} steps${result.resumedFrom > 0 && result.resumedFrom < training.steps ? ` (resumed at step ${result.resumedFrom})` : ''} on ${result.samples || 'the'} narratives in ${result.seconds.toFixed(0)} s; ` +
        `loss ${mean(first).toFixed(4)} (first 20 steps) → ${mean(last).toFixed(4)} (last 20)` +
        (result.truncatedPhrases ? `; ${result.truncatedPhrases} phrases beyond max_phrases were left out` : '') +
        `\nmodel: ${result.grounderDir}\n` +
        (gates ? `EIPA${gates} (mean |tanh g| per kind: extract, inject)\n` : ''),
    );
  } finally {
    backbone.dispose();
  }
}

/** ' gates e 0.0123 i 0.0456' (the kinds that have gates), or '' without any. */
function formatGates(gates: EipaGateMagnitudes | undefined): string {
  if (!gates) return '';
  const parts = (['extract', 'inject'] as const).flatMap((kind) => {
    const gate = gates[kind];
    return gate === null ? [] : [`${kind[0]} ${gate.toFixed(4)}`];
  });
  return parts.length ? ` gates ${parts.join(' ')}` : '';
}

/** The trained model of a run folder and the image size it was trained at. */
async function loadRun(
  runDir: string,
  backbone: DiffusionBackbone,
  options: { recordAttention?: boolean } = {},
): Promise<{ grounder: PngGrounder; imageSize: number }> {
  const runFile = path.join(runDir, 'run.json');
  if (!fs.existsSync(runFile)) throw new Error(`${runDir}: not a png train run folder (no run.json)`);
  const grounderDir = path.join(runDir, 'grounder');
  if (!fs.existsSync(path.join(grounderDir, 'config.json')))
    throw new Error(`${runDir}: the run has not finished (no grounder/); rerun its png train command to complete it`);
  const run = JSON.parse(fs.readFileSync(runFile, 'utf8')) as { training?: { image_size?: number } };
  const imageSize = run.training?.image_size;
  if (imageSize === undefined || !Number.isInteger(imageSize)) throw new Error(`${runFile}: training.image_size is missing`);
  return { grounder: await PngGrounder.fromPretrained(grounderDir, backbone, options), imageSize };
}

async function evaluate(args: readonly string[], env: CliEnvironment): Promise<void> {
  if (args.includes('--merge')) return mergeShards(args, env);
  const v = parse(
    args,
    {
      ...MODEL_OPTIONS,
      data: { type: 'string' },
      split: { type: 'string' },
      run: { type: 'string' },
      out: { type: 'string' },
      overlays: { type: 'string' },
      'attention-maps': { type: 'string' },
      limit: { type: 'string' },
      'group-by': { type: 'string' },
      'size-thresholds': { type: 'string' },
      bootstrap: { type: 'string' },
      probe: { type: 'string' },
      json: { type: 'boolean' },
      shard: { type: 'string' },
    },
    ['data', 'run'],
  );
  const split = (v.split as string | undefined) ?? 'val2017';
  const probe = probeOption(v.probe as string | undefined);
  const shard = shardOption(v.shard as string | undefined);
  const out = (v.out as string | undefined) ?? path.join(v.run as string, `eval-${split}${probe ? `-${v.probe}` : ''}`);
  const metrics = metricsOptions(v);
  const backbone = await loadBackbone(v, env);
  try {
    const { grounder, imageSize } = await loadRun(v.run as string, backbone, { recordAttention: intOption(v, 'attention-maps', 4) > 0 });
    let bar: ProgressBar | undefined;
    try {
      const result = await evaluateOnBenchmark({
        data: v.data as string,
        split,
        grounder,
        imageSize,
        out,
        overlays: intOption(v, 'overlays', 8),
        attentionMaps: intOption(v, 'attention-maps', 4),
        limit: v.limit === undefined ? undefined : intOption(v, 'limit', 1, 1),
        metrics,
        probe,
        shard,
        onProgress: (done, total) => {
          bar ??= progress(env, v, total, 'evaluate');
          bar.update(done);
        },
      });
      bar?.finish();
      reportLeftOut(env, result.skipped, result.dropped);
      if (shard)
        env.stdout.write(
          `shard ${shard.index}/${shard.count}: ${result.phrases} phrases of ${result.samples} narratives in ${result.seconds.toFixed(0)} s; wrote ${result.shardFile}\n` +
            `once all ${shard.count} shards are done: png evaluate --merge --out DIR <the ${shard.count} shard-K-of-${shard.count}.json files>\n`,
        );
      else
        printEvaluation(
          env,
          v.json === true,
          result,
          `${result.phrases} phrases of ${result.samples} narratives in ${result.seconds.toFixed(0)} s; outputs in ${out}`,
        );
    } finally {
      grounder.dispose();
    }
  } finally {
    backbone.dispose();
  }
}

/** The summary as JSON, or the metrics table, the whole-image baseline and `closing`. */
function printEvaluation(
  env: CliEnvironment,
  json: boolean,
  result: { metrics: PngMetrics; summary: PngSummary; baseline: PngSummary },
  closing: string,
): void {
  if (json) {
    env.stdout.write(`${JSON.stringify({ ...result.summary, baseline_full_image: result.baseline })}\n`);
    return;
  }
  env.stdout.write(`${formatMetricsTable(result.metrics)}\n`);
  env.stdout.write(`trivial baseline (every phrase = the whole image): AR ${formatPercent(result.baseline.overall ?? NaN)}\n`);
  env.stdout.write(`${closing}\n`);
}

/** `png evaluate --merge --out DIR FILE...`: the report of the unsharded run from its shard files. */
function mergeShards(args: readonly string[], env: CliEnvironment): void {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: { merge: { type: 'boolean' }, out: { type: 'string' }, json: { type: 'boolean' } },
    strict: true,
    allowPositionals: true,
  });
  if (values.out === undefined) throw new UsageError('--merge needs --out DIR, the folder for report.json, ar_curves.svg and predictions.json');
  if (positionals.length === 0) throw new UsageError('--merge needs the shard-K-of-N.json files of every shard');
  const merged = mergeEvaluationShards(positionals, values.out);
  printEvaluation(
    env,
    values.json === true,
    merged,
    `${merged.phrases} phrases of ${merged.samples} narratives from ${merged.shards} shards; outputs in ${values.out}`,
  );
}

/** `--shard K/N` (0-based K) as the evaluation's shard. */
function shardOption(text: string | undefined): EvaluationShard | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  const [index, count] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
  if (!(count >= 1 && index < count))
    throw new UsageError(`--shard takes K/N with 0 <= K < N (K is 0-based, as JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID of --array=0-(N-1)), got '${text}'`);
  return { index, count };
}

/** `--probe`'s value as the evaluation's probe. */
function probeOption(name: string | undefined): EipaProbe['kind'] | undefined {
  if (name === undefined) return undefined;
  const probes: Record<string, EipaProbe['kind']> = { 'zero-gates': 'zero_gates', 'swap-phrases': 'swap_phrases' };
  if (!Object.hasOwn(probes, name)) throw new UsageError(`--probe must be zero-gates or swap-phrases, got '${name}'`);
  return probes[name];
}

async function baseline(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      data: { type: 'string' },
      split: { type: 'string' },
      rule: { type: 'string', multiple: true },
      stride: { type: 'string', multiple: true },
      'image-size': { type: 'string' },
      'train-split': { type: 'string' },
      'colour-distance': { type: 'string' },
      'group-by': { type: 'string' },
      'size-thresholds': { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
    },
    ['data'],
  );
  const rules = (v.rule as string[] | undefined) ?? [...BASELINE_RULES];
  for (const rule of rules)
    if (!BASELINE_RULES.includes(rule as BaselineRule)) throw new UsageError(`--rule must be one of ${BASELINE_RULES.join(', ')}, got '${rule}'`);
  const strides = ((v.stride as string[] | undefined) ?? ['4']).map((raw) => intOption({ stride: raw }, 'stride', 4, 1));
  const { groupBy, sizeThresholds } = metricsOptions(v);
  await useBackend(v);
  const result = await evaluateBaselines({
    data: v.data as string,
    split: v.split as string | undefined,
    trainSplit: v['train-split'] as string | undefined,
    rules: rules as BaselineRule[],
    strides,
    imageSize: v['image-size'] === undefined ? undefined : intOption(v, 'image-size', 0, 8),
    colourDistance: v['colour-distance'] === undefined ? undefined : numberOption(v, 'colour-distance', 40),
    limit: v.limit === undefined ? undefined : intOption(v, 'limit', 1, 1),
    metrics: { groupBy, sizeThresholds },
  });
  reportLeftOut(env, result.skipped, result.dropped);
  if (v.json)
    env.stdout.write(
      `${JSON.stringify({ split: result.split, samples: result.samples, phrases: result.phrases, scores: result.scores.map((s) => ({ name: s.name, ...summarizeMetrics(s.metrics) })) })}\n`,
    );
  else env.stdout.write(formatBaselineTable(result));
}

/** One row per rule: AR of the five groups, the size buckets and every tag value; a first row with the phrase counts. */
function formatBaselineTable(result: BaselineResult): string {
  const first = result.scores[0]?.metrics;
  if (!first) return `no rule scored on ${result.split}\n`;
  const keys = Object.keys(first.byTag);
  const tagColumns = keys.flatMap((key) =>
    Object.keys(first.byTag[key]).map((value) => ({ name: keys.length > 1 ? `${key}=${value}` : value, of: (m: PngMetrics) => m.byTag[key][value] })),
  );
  const columns = [
    ...PHRASE_GROUPS.map((g) => ({ name: g, of: (m: PngMetrics) => m[g] })),
    ...SIZE_BUCKETS.map((b) => ({ name: b, of: (m: PngMetrics) => m.bySize[b] })),
    ...tagColumns,
  ];
  const header = ['rule', ...columns.map((c) => c.name)];
  const counts = ['(phrases)', ...columns.map((c) => String(c.of(first).count))];
  const rows = result.scores.map((s) => [s.name, ...columns.map((c) => formatPercent(c.of(s.metrics).averageRecall))]);
  const widths = header.map((h, c) => Math.max(h.length, ...[counts, ...rows].map((r) => r[c].length)));
  const line = (cells: string[]) => `${cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')}\n`;
  const [small, medium] = first.sizeThresholds;
  return `Average Recall on ${result.split} (${result.samples} narratives, ${result.phrases} phrases; GT area small < ${small} <= medium < ${medium} <= large pixels)\n${[header, counts, ...rows].map(line).join('')}`;
}

/** `png evaluate`'s groups and bootstrap. */
function metricsOptions(values: Record<string, unknown>): PngEvaluateOptions {
  const groupBy = (values['group-by'] as string | undefined)?.split(',').map((key) => key.trim());
  if (groupBy?.some((key) => key === '')) throw new UsageError(`--group-by takes comma-separated keys, got '${values['group-by']}'`);
  const thresholds = values['size-thresholds'] as string | undefined;
  let sizeThresholds: [number, number] | undefined;
  try {
    sizeThresholds = thresholds === undefined ? undefined : parseSizeThresholds(thresholds);
  } catch (e) {
    throw new UsageError(`--size-thresholds: ${(e as Error).message}`);
  }
  const resamples = intOption(values, 'bootstrap', 1000);
  return { groupBy, sizeThresholds, ...(resamples > 0 ? { bootstrap: { resamples } } : {}) };
}

/** The spans of `--phrase` texts in the caption: each at its first occurrence after the previous one. */
function spansInCaption(caption: string, texts: readonly string[]): [number, number][] {
  let from = 0;
  return texts.map((text) => {
    const start = text.trim() === '' ? -1 : caption.indexOf(text, from);
    if (start < 0)
      throw new UsageError(
        `--phrase ${JSON.stringify(text)} does not occur in --caption${from > 0 ? ' after the previous --phrase' : ''}; pass phrases as written in the caption, in caption order`,
      );
    from = start + text.length;
    return [start, from];
  });
}

async function ground(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      ...MODEL_OPTIONS,
      image: { type: 'string' },
      caption: { type: 'string' },
      phrase: { type: 'string', multiple: true },
      run: { type: 'string' },
      out: { type: 'string' },
    },
    ['image', 'caption', 'run'],
  );
  const imageFile = v.image as string;
  if (!fs.existsSync(imageFile)) throw new Error(`--image ${imageFile}: no such file`);
  const image = decodeImage(new Uint8Array(await readInputFile(imageFile, 'an image (JPEG or PNG)')), imageFile);
  const caption = v.caption as string;
  if (caption.trim() === '') throw new UsageError('--caption is empty; pass the narrative to ground');
  const phraseSpans = v.phrase === undefined ? undefined : spansInCaption(caption, v.phrase as string[]);
  const out = (v.out as string | undefined) ?? 'png-ground';
  const backbone = await loadBackbone(v, env);
  try {
    const { grounder, imageSize } = await loadRun(v.run as string, backbone);
    try {
      const phrases = await groundNarrative(grounder, image, caption, { imageSize, phrases: phraseSpans });
      const overlay = renderOverlay(
        image,
        phrases.map((p) => ({ label: p.text, mask: p.mask })),
      );
      writeFileAtomic(path.join(out, 'overlay.png'), encodePng(overlay.width, overlay.height, overlay.data));
      const masks = {
        image: path.resolve(imageFile),
        caption,
        height: image.height,
        width: image.width,
        phrases: phrases.map((p) => ({
          text: p.text,
          span: p.span,
          area: p.mask.reduce((a, b) => a + b, 0),
          rle: encodeRle(p.mask, image.height, image.width),
        })),
      };
      writeFileAtomic(path.join(out, 'masks.json'), `${JSON.stringify(masks, null, 2)}\n`);
      env.stdout.write(
        `${phrases.length} phrases: ${phrases.map((p) => JSON.stringify(p.text)).join(', ')}\nwrote ${path.join(out, 'overlay.png')} and ${path.join(out, 'masks.json')}\n`,
      );
    } finally {
      grounder.dispose();
    }
  } finally {
    backbone.dispose();
  }
}

async function pretrain(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      out: { type: 'string' },
      seed: { type: 'string' },
      scenes: { type: 'string' },
      'vae-steps': { type: 'string' },
      'unet-steps': { type: 'string' },
      settings: { type: 'string' },
      backend: { type: 'string' },
      progress: { type: 'boolean' },
    },
    ['out'],
  );
  const settings: Record<string, unknown> = v.settings === undefined ? {} : readJsonFile(v.settings as string, '--settings');
  if (v.seed !== undefined) settings.seed = intOption(v, 'seed', 0);
  if (v.scenes !== undefined) settings.scenes = intOption(v, 'scenes', 0, 1);
  if (v['vae-steps'] !== undefined) settings.vae_steps = intOption(v, 'vae-steps', 0, 1);
  if (v['unet-steps'] !== undefined) settings.unet_steps = intOption(v, 'unet-steps', 0, 1);
  const backend = await useBackend(v);
  const labels: Record<PretrainProgress['stage'], string> = { scenes: 'scenes', vae: 'vae', latents: 'latents', unet: 'unet + text encoder' };
  const bars = new Map<PretrainProgress['stage'], ProgressBar>();
  const result = await pretrainBackbone({
    out: v.out as string,
    settings: settings as Partial<PretrainSettings>,
    onProgress: ({ stage, done, total, loss }) => {
      let bar = bars.get(stage);
      if (!bar) {
        bar = progress(env, v, total, labels[stage], stage === 'vae' || stage === 'unet' ? done - 1 : 0);
        bars.set(stage, bar);
      }
      bar.update(done, loss === undefined ? undefined : `loss ${loss.toFixed(4)}`);
      if (done === total) bar.finish();
    },
  });
  const s = result.seconds;
  const p = result.parameters;
  env.stdout.write(
    `wrote ${result.out}: UNet ${p.unet.toLocaleString()}, VAE ${p.vae.toLocaleString()}, text encoder ${p.text_encoder.toLocaleString()} parameters; ` +
      `vocabulary ${result.vocabularySize} tokens; scaling_factor ${result.scalingFactor.toPrecision(5)}\n` +
      `time on ${backend}: scenes + vocabulary ${formatDuration(s.tokenizer * 1000)}, VAE ${formatDuration(s.vae * 1000)}, latents ${formatDuration(s.latents * 1000)}, ` +
      `UNet + text encoder ${formatDuration(s.unet * 1000)}; total ${formatDuration(s.total * 1000)}\n`,
  );
}

async function sample(args: readonly string[], env: CliEnvironment): Promise<void> {
  const v = parse(
    args,
    {
      ...MODEL_OPTIONS,
      prompt: { type: 'string', multiple: true },
      out: { type: 'string' },
      negative: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      seed: { type: 'string' },
      scale: { type: 'string' },
      columns: { type: 'string' },
    },
    ['prompt', 'out'],
  );
  const prompts = v.prompt as string[];
  if (prompts.some((p) => p.trim() === '')) throw new UsageError('--prompt is empty; say what to draw');
  const guidance = v.guidance === undefined ? 7.5 : Number(v.guidance);
  if (!Number.isFinite(guidance)) throw new UsageError(`--guidance must be a number, got '${v.guidance}'`);
  const scale = intOption(v, 'scale', 1, 1);
  const columns = intOption(v, 'columns', prompts.length, 1);
  const backbone = await loadBackbone(v, env, { vaeParts: 'all' });
  try {
    const images = backbone.generate(prompts, {
      numInferenceSteps: intOption(v, 'steps', 50, 1),
      guidanceScale: guidance,
      negativePrompt: v.negative as string | undefined,
      seed: intOption(v, 'seed', 0),
    });
    const [b, h, w] = images.shape;
    const pixels = await images.data();
    images.dispose();
    const tiles: RgbImage[] = Array.from({ length: b }, (_, i) =>
      enlargeImage({ width: w, height: h, data: Uint8Array.from(pixels.subarray(i * h * w * 3, (i + 1) * h * w * 3), (x) => Math.round(255 * x)) }, scale),
    );
    const out =
      b === 1
        ? tiles[0]
        : tileImages(
            tiles.map((image, i) => ({ image, title: prompts[i] })),
            { columns },
          );
    writeFileAtomic(v.out as string, encodePng(out.width, out.height, out.data));
    env.stdout.write(`wrote ${v.out} (${b} image${b > 1 ? 's' : ''}, ${w}×${h}${scale > 1 ? ` shown ×${scale}` : ''})\n`);
  } finally {
    backbone.dispose();
  }
}
