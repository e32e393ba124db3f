/**
 * Trains a PngGrounder on a PNG benchmark split: one resumable run folder.
 *
 *   <out>/run.json         the grounder config and training settings (a rerun must match them)
 *   <out>/checkpoint/      trainable weights + AdamW state + step, every `checkpoint_every` steps
 *   <out>/losses.json      the loss of every step so far
 *   <out>/grounder/        the trained model (PngGrounder.save) once all steps are done
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { check, isFiniteNumber, isNonNegativeInt, isPositiveInt, resolveConfig, writeFileAtomic } from '@png/core';
import type { DiffusionBackbone } from '@png/diffusion-backbone';
import { Prng, type DroppedRecord, type SkippedRecord } from '@png/png-data';
import { encodeSamples, gatherBatch, readGroundedSamples } from './benchmark_samples';
import { PngGrounder, phraseEncoding, resolvePngGrounderConfig, type PngGrounderConfig } from './png_grounder';
import { warmupPoly } from './lr_schedule';
import { TRAINER_STATE_FILE } from './checkpoint_dir';
import { Trainer, TrainingDivergedError } from './trainer';

/** Training settings of a run (snake_case, as saved in run.json). */
export interface TrainingSettings {
  readonly steps: number;
  readonly batch_size: number;
  readonly lr: number;
  readonly warmup_steps: number;
  readonly weight_decay: number;
  readonly clip_grad_norm: number;
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
  image_size: 64,
  seed: 0,
  checkpoint_every: 50,
  limit: null,
});

export function resolveTrainingSettings(user: Partial<TrainingSettings> | Record<string, unknown> = {}): TrainingSettings {
  return resolveConfig('TrainingSettings', DEFAULT_TRAINING_SETTINGS, user, (c) => {
    for (const key of ['steps', 'batch_size', 'image_size', 'checkpoint_every'] as const) check(isPositiveInt(c[key]), 'TrainingSettings', key, 'a positive integer', c[key]);
    check(isFiniteNumber(c.lr) && c.lr > 0, 'TrainingSettings', 'lr', 'a number > 0', c.lr);
    check(isNonNegativeInt(c.warmup_steps) && c.warmup_steps < c.steps, 'TrainingSettings', 'warmup_steps', `an integer in [0, steps = ${c.steps})`, c.warmup_steps);
    check(isFiniteNumber(c.weight_decay) && c.weight_decay >= 0, 'TrainingSettings', 'weight_decay', 'a number ≥ 0', c.weight_decay);
    check(isFiniteNumber(c.clip_grad_norm) && c.clip_grad_norm > 0, 'TrainingSettings', 'clip_grad_norm', 'a number > 0', c.clip_grad_norm);
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
  const files = { run: path.join(options.out, 'run.json'), checkpoint: path.join(options.out, 'checkpoint'), losses: path.join(options.out, 'losses.json'), grounder: path.join(options.out, 'grounder') };
  checkSameRun(files.run, run);
  await writeFileAtomic(files.run, JSON.stringify(run, null, 2) + '\n');
  const finished = readLosses(files.losses);
  if (finished.length === training.steps && fs.existsSync(path.join(files.grounder, 'config.json'))) {
    return { grounderDir: files.grounder, losses: finished, resumedFrom: training.steps, samples: 0, truncatedPhrases: 0, skipped: [], dropped: [], seconds: (performance.now() - began) / 1000 };
  }

  const { samples, skipped, dropped } = await readGroundedSamples(options.data, split, { limit: training.limit ?? undefined });
  options.onProgress?.({ phase: 'encode', done: 0, total: samples.length });
  const encoded = encodeSamples(options.backbone, samples, { size: training.image_size, ...phraseEncoding(config) });
  options.onProgress?.({ phase: 'encode', done: samples.length, total: samples.length });
  const grounder = PngGrounder.create(options.backbone, config, { seed: training.seed });
  const schedule = warmupPoly({ base_lr: training.lr, warmup_steps: training.warmup_steps, total_steps: training.steps });
  const trainer = new Trainer<number[]>({
    variables: grounder.namedVariables(),
    lossFn: (indices) => {
      const batch = gatherBatch(encoded, indices);
      return grounder.loss(batch.latents, batch.phrases, batch.targets);
    },
    optimizer: { lr: training.lr, weight_decay: training.weight_decay, noDecay: (key) => /(bias|norm|gate|gamma|level_weights)/.test(key) },
    schedule,
    clip_grad_norm: training.clip_grad_norm,
  });
  try {
    let losses: number[] = [];
    if (fs.existsSync(path.join(files.checkpoint, TRAINER_STATE_FILE))) {
      await trainer.resume(files.checkpoint);
      losses = readLosses(files.losses).slice(0, trainer.iterations);
    }
    const resumedFrom = trainer.iterations;
    const order = new BatchOrder(samples.length, training.batch_size, training.seed);
    for (let step = resumedFrom; step < training.steps; step++) {
      let result;
      try {
        result = await trainer.step(order.batch(step));
      } catch (e) {
        if (e instanceof TrainingDivergedError) {
          e.message += ` The last good checkpoint (step ${Math.floor(step / training.checkpoint_every) * training.checkpoint_every}) is in ${files.checkpoint}; rerun to resume from it.`;
        }
        throw e;
      }
      losses.push(result.loss);
      const done = step + 1;
      if (done % training.checkpoint_every === 0 || done === training.steps) {
        await trainer.save(files.checkpoint);
        await writeFileAtomic(files.losses, JSON.stringify(losses));
      }
      const recent = losses.slice(-20);
      options.onProgress?.({ phase: 'train', done, total: training.steps, loss: recent.reduce((a, b) => a + b, 0) / recent.length, lr: result.lr });
    }
    await grounder.save(files.grounder);
    return { grounderDir: files.grounder, losses, resumedFrom, samples: samples.length, truncatedPhrases: encoded.truncated, skipped, dropped, seconds: (performance.now() - began) / 1000 };
  } finally {
    grounder.dispose();
    trainer.dispose();
    tf.dispose([encoded.latents, encoded.phrases, encoded.targets]);
  }
}

/** A run folder holds one run: refuse to mix settings into an existing one. */
function checkSameRun(file: string, run: RunFile): void {
  if (!fs.existsSync(file)) return;
  let previous: RunFile;
  try {
    previous = JSON.parse(fs.readFileSync(file, 'utf8')) as RunFile;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message}); remove the run folder or choose another --out`);
  }
  for (const key of ['data', 'split', 'config', 'training'] as const) {
    if (JSON.stringify(previous[key]) !== JSON.stringify(run[key])) {
      throw new Error(`${file}: this run folder was started with another ${key} (${JSON.stringify(previous[key])}, now ${JSON.stringify(run[key])}); rerun with the same settings to resume, or choose another --out`);
    }
  }
}

function readLosses(file: string): number[] {
  if (!fs.existsSync(file)) return [];
  const losses = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  if (!Array.isArray(losses) || !losses.every((l) => typeof l === 'number')) throw new Error(`${file}: expected a JSON array of numbers (the loss of every step)`);
  return losses;
}

/**
 * The data order: epoch e visits the samples in a shuffle seeded by (seed, e); step s takes the
 * next `batchSize` of that endless stream. A function of the step alone, so a resumed run sees
 * the batches an uninterrupted one would.
 */
export class BatchOrder {
  private readonly epochs = new Map<number, number[]>();

  constructor(
    readonly size: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {}

  batch(step: number): number[] {
    const out: number[] = [];
    for (let k = step * this.batchSize; k < (step + 1) * this.batchSize; k++) {
      const epoch = Math.floor(k / this.size);
      let order = this.epochs.get(epoch);
      if (!order) {
        order = new Prng(this.seed * 100_003 + epoch).shuffle(Array.from({ length: this.size }, (_, i) => i));
        this.epochs.clear(); // a batch spans at most two epochs, and steps only go forward
        this.epochs.set(epoch, order);
      }
      out.push(order[k % this.size]);
    }
    return out;
  }
}
