/**
 * Trains a PngGrounder on a PNG benchmark split: one resumable run folder.
 *
 *   <out>/run.json         the grounder config and training settings (a rerun must match them)
 *   <out>/checkpoints/     the newest checkpoint-<step>/: trainable weights, AdamW state, the loss
 *                          and EIPA's gate magnitudes (mean |tanh g| per kind) of every step so far,
 *                          every `checkpoint_every` steps (@png/training)
 *   <out>/grounder/        the trained model (PngGrounder.save) once all steps are done
 *
 * Every input is read and checked before run.json is written, so a start that fails leaves
 * nothing; a run killed at any moment resumes to the files an uninterrupted run writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { check, isFiniteNumber, isNonNegativeInt, isPositiveInt, resolveConfig } from '@png/core';
import type { DiffusionBackbone } from '@png/diffusion-backbone';
import type { EipaGateMagnitudes } from '@png/eipa';
import { Prng, deriveSeed, killPoint, removeStaleTemporaries } from '@png/node-utils';
import type { DroppedRecord, SkippedRecord } from '@png/png-data';
import { BatchOrder, Trainer, guardRun, latestCheckpoint, runTrainingLoop, warmupPoly } from '@png/training';
import { encodeSamples, gatherBatch, readGroundedSamples } from './benchmark_samples';
import { PngGrounder, resolvePngGrounderConfig, type PngGrounderConfig } from './png_grounder';

/** Names the random stream of point_loss's points among the run's streams (deriveSeed's parts). */
const POINT_STREAM = 0x706f696e; // 'poin'

/** Training settings of a run (snake_case, as saved in run.json). */
export interface TrainingSettings {
  readonly steps: number;
  readonly batch_size: number;
  readonly lr: number;
  readonly warmup_steps: number;
  readonly weight_decay: number;
  readonly clip_grad_norm: number;
  /** Factor on the learning rate (step and decay) of EIPA's gates, a param group of their own; 1: as every other variable. */
  readonly gate_lr_multiplier: number;
  /** Canvas side the images are letterboxed to (a multiple of the backbone's imageMultiple). */
  readonly image_size: number;
  /** Seed of the trainable parts' initialisation and of the data order. */
  readonly seed: number;
  readonly checkpoint_every: number;
  /** Use only the first `limit` grounded records of the split (null: all). */
  readonly limit: number | null;
}

export const DEFAULT_TRAINING_SETTINGS: TrainingSettings = Object.freeze({
  steps: 500,
  batch_size: 4,
  lr: 1e-3,
  warmup_steps: 50,
  weight_decay: 1e-2,
  clip_grad_norm: 1,
  gate_lr_multiplier: 1,
  image_size: 64,
  seed: 0,
  checkpoint_every: 50,
  limit: null,
});

export function resolveTrainingSettings(user: Partial<TrainingSettings> | Record<string, unknown> = {}): TrainingSettings {
  return resolveConfig('TrainingSettings', DEFAULT_TRAINING_SETTINGS, user, (c) => {
    for (const key of ['steps', 'batch_size', 'image_size', 'checkpoint_every'] as const)
      check(isPositiveInt(c[key]), 'TrainingSettings', key, 'a positive integer', c[key]);
    check(isFiniteNumber(c.lr) && c.lr > 0, 'TrainingSettings', 'lr', 'a number > 0', c.lr);
    check(
      isNonNegativeInt(c.warmup_steps) && c.warmup_steps < c.steps,
      'TrainingSettings',
      'warmup_steps',
      `an integer in [0, steps = ${c.steps})`,
      c.warmup_steps,
    );
    check(isFiniteNumber(c.weight_decay) && c.weight_decay >= 0, 'TrainingSettings', 'weight_decay', 'a number ≥ 0', c.weight_decay);
    check(isFiniteNumber(c.clip_grad_norm) && c.clip_grad_norm > 0, 'TrainingSettings', 'clip_grad_norm', 'a number > 0', c.clip_grad_norm);
    check(isFiniteNumber(c.gate_lr_multiplier) && c.gate_lr_multiplier > 0, 'TrainingSettings', 'gate_lr_multiplier', 'a number > 0', c.gate_lr_multiplier);
    check(Number.isInteger(c.seed), 'TrainingSettings', 'seed', 'an integer', c.seed);
    check(c.limit === null || isPositiveInt(c.limit), 'TrainingSettings', 'limit', 'a positive integer or null', c.limit);
  });
}

/** What a run reports while it trains. */
export interface TrainingProgress {
  readonly phase: 'encode' | 'train';
  /** Steps done (train) or samples encoded (encode). */
  readonly done: number;
  readonly total: number;
  /** Mean loss of the last steps (train only). */
  readonly loss?: number;
  readonly lr?: number;
  /** EIPA's mean |tanh(gate)| per kind after this step (train only): how far it has left static prompting. */
  readonly gates?: EipaGateMagnitudes;
}

export interface BenchmarkTrainingOptions {
  /** Benchmark folder (images/ and annotations/, spec §1.1). */
  readonly data: string;
  /** Default 'train2017'. */
  readonly split?: string;
  /** Run folder; an existing run with the same settings is resumed. */
  readonly out: string;
  readonly backbone: DiffusionBackbone;
  readonly config?: Partial<PngGrounderConfig>;
  readonly training?: Partial<TrainingSettings>;
  readonly onProgress?: (progress: TrainingProgress) => void;
}

export interface BenchmarkTrainingResult {
  /** The trained model's folder (`PngGrounder.fromPretrained(grounderDir, backbone)`). */
  readonly grounderDir: string;
  /** Loss of every step of the run, resumed steps included. */
  readonly losses: number[];
  /** EIPA's gate magnitudes after every step of the run, as `losses`. */
  readonly gates: EipaGateMagnitudes[];
  /** The step the run resumed from (0: a fresh run). */
  readonly resumedFrom: number;
  /** Training samples (0 when the run was already finished). */
  readonly samples: number;
  /** Phrases beyond max_phrases left out of training. */
  readonly truncatedPhrases: number;
  /** Bad records of the split, left out (each with its index and the field at fault). */
  readonly skipped: readonly SkippedRecord[];
  /** Records the official pre-processing drops, left out as in the official code. */
  readonly dropped: readonly DroppedRecord[];
  readonly seconds: number;
}

/** run.json: what a run was started with; a rerun with other values is refused. */
interface RunFile {
  readonly data: string;
  readonly split: string;
  readonly config: PngGrounderConfig;
  readonly training: TrainingSettings;
}

/**
 * Trains EIPA + MLMA + decoder on the frozen backbone. Resumable: rerunning with the same options
 * continues from the last checkpoint with the identical next batch; a finished run loads its model.
 * A diverging loss stops the run with the last good checkpoint kept.
 */
export async function trainOnBenchmark(options: BenchmarkTrainingOptions): Promise<BenchmarkTrainingResult> {
  const began = performance.now();
  const split = options.split ?? 'train2017';
  const config = resolvePngGrounderConfig(options.config ?? {});
  const training = resolveTrainingSettings(options.training ?? {});
  const run: RunFile = { data: path.resolve(options.data), split, config, training };
  const files = { checkpoints: path.join(options.out, 'checkpoints'), grounder: path.join(options.out, 'grounder') };
  // a run recorded before a config field was added resumes when the field is at its default
  const guard = guardRun(options.out, run, (recorded) => ({
    ...recorded,
    config: resolvePngGrounderConfig((recorded.config ?? {}) as Record<string, unknown>),
    training: resolveTrainingSettings((recorded.training ?? {}) as Record<string, unknown>),
  }));
  if (guard.resumed && fs.existsSync(files.grounder)) {
    const latest = await latestCheckpoint(files.checkpoints);
    if (latest?.step === training.steps) {
      return {
        grounderDir: files.grounder,
        losses: latest.losses,
        gates: (latest.logs ?? []) as EipaGateMagnitudes[],
        resumedFrom: training.steps,
        samples: 0,
        truncatedPhrases: 0,
        skipped: [],
        dropped: [],
        seconds: (performance.now() - began) / 1000,
      };
    }
  }

  const { samples, skipped, dropped } = await readGroundedSamples(options.data, split, { limit: training.limit ?? undefined });
  let grounder: PngGrounder | undefined;
  let trainer: Trainer<number[]> | undefined;
  let encoded: ReturnType<typeof encodeSamples> | undefined;
  try {
    grounder = PngGrounder.create(options.backbone, config, { seed: training.seed });
    const model = grounder;
    // the grounder encodes: with a finer mask_stride its VAE encoder maps are cached beside the latents
    options.onProgress?.({ phase: 'encode', done: 0, total: samples.length });
    encoded = encodeSamples(model, samples, { size: training.image_size, maxPhrases: config.max_phrases });
    const data = encoded;
    options.onProgress?.({ phase: 'encode', done: samples.length, total: samples.length });
    trainer = new Trainer<number[]>({
      variables: model.namedVariables(),
      lossFn: (indices) => {
        const batch = gatherBatch(data, indices);
        // point_loss's points: a stream per batch (the run's seed and the batch's samples), so a resumed run draws the same
        const random = config.point_loss ? new Prng(deriveSeed(training.seed, POINT_STREAM, ...indices)).next : undefined;
        return model.loss(batch.latents, batch.phrases, batch.targets, batch.skips, random);
      },
      optimizer: {
        lr: training.lr,
        weight_decay: training.weight_decay,
        noDecay: (key) => /(bias|norm|gate|gamma|level_weights)/.test(key),
        lrMultiplier: (key) => (/^eipa\..*\.gate$/.test(key) ? training.gate_lr_multiplier : 1),
      },
      schedule: warmupPoly({ base_lr: training.lr, warmup_steps: training.warmup_steps, total_steps: training.steps }),
      clip_grad_norm: training.clip_grad_norm,
    });
    guard.record(); // every input is valid: the run folder starts here
    removeStale(options.out);
    const order = new BatchOrder(samples.length, training.batch_size, training.seed);
    const {
      losses,
      logs: gates,
      resumedFrom,
    } = await runTrainingLoop({
      dir: files.checkpoints,
      trainer,
      steps: training.steps,
      checkpointEvery: training.checkpoint_every,
      batch: (step) => order.batch(step),
      log: () => model.adapter.gateMagnitudes(),
      onStep: ({ log: gates, ...p }) => options.onProgress?.({ phase: 'train', ...p, gates }),
    });
    await saveFolderAtomically(files.grounder, (dir) => model.save(dir));
    return {
      grounderDir: files.grounder,
      losses,
      gates,
      resumedFrom,
      samples: samples.length,
      truncatedPhrases: data.truncated,
      skipped,
      dropped,
      seconds: (performance.now() - began) / 1000,
    };
  } finally {
    grounder?.dispose();
    trainer?.dispose();
    if (encoded) tf.dispose([encoded.latents, encoded.skips, encoded.phrases, encoded.targets]);
  }
}

const GROUNDER_TEMPORARY = /^grounder\.tmp-/;

/** Removes what a killed run left in its folder: a half-written run.json or grounder/ (the checkpoint loop cleans its own). */
function removeStale(out: string): void {
  removeStaleTemporaries(out);
  for (const name of fs.readdirSync(out)) if (GROUNDER_TEMPORARY.test(name)) fs.rmSync(path.join(out, name), { recursive: true, force: true });
}

/** Writes the folder `dir` whole: into `<dir>.tmp-<pid>`, then renamed into place (replacing an older one). */
async function saveFolderAtomically(dir: string, write: (dir: string) => Promise<void>): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  await write(tmp);
  killPoint(`${path.basename(dir)} written`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  killPoint(`${path.basename(dir)} renamed`);
}
