/**
 * The one resumable training loop of the @png training jobs. Its folder holds the newest
 * checkpoint:
 *
 *     <dir>/checkpoint-<step>/   trainable.safetensors, optimizer.safetensors and trainer_state.json,
 *                                whose `extra.losses` is the loss of every step up to <step> (and,
 *                                with a `log`, `extra.logs` its value after every step)
 *
 * A checkpoint is written into a temporary folder and renamed into place, so the rename commits
 * the weights, the optimizer state and the loss history together; only then is the previous one
 * removed. A run killed at any moment resumes from the newest checkpoint folder (temporaries and
 * older checkpoints left by the kill are removed) and, the batches being a function of the step,
 * ends with the files an uninterrupted run writes. Node only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isPositiveInt } from '@png/core';
import { readTrainingCheckpointState } from './checkpoint_dir';
import { type StepResult, TrainingDivergedError, type Trainer } from './trainer';

/** What the loop reports after every step. */
export interface TrainingLoopProgress {
  /** Steps done. */
  readonly done: number;
  readonly total: number;
  /** Mean loss of the last 20 steps. */
  readonly loss: number;
  /** Learning rate of the step just done. */
  readonly lr: number;
}

export interface TrainingLoopOptions<B, L = never> {
  /** The loop's checkpoint folder (created on the first checkpoint). */
  readonly dir: string;
  /** The trainer (accumulation_steps 1: one `step` per training step); the loop restores it from the newest checkpoint. */
  readonly trainer: Trainer<B>;
  /** Training steps of the whole run. */
  readonly steps: number;
  /** A checkpoint after every this many steps, and after the last. */
  readonly checkpointEvery: number;
  /** The batch of step `step` (0-based): a function of the step alone, so a resumed run sees the batches an uninterrupted one would. */
  readonly batch: (step: number) => B;
  /**
   * What to keep beside the loss after every step (plain JSON data, e.g. EIPA's gate magnitudes):
   * saved with the losses in each checkpoint, so it resumes with them. May read tensors
   * asynchronously (`await t.data()`: WebGPU in Node has no synchronous reads).
   */
  readonly log?: () => L | Promise<L>;
  /** After every step; `log` is that step's `log` entry (absent without a `log`). */
  readonly onStep?: (progress: TrainingLoopProgress & { readonly log?: L }) => void;
}

export interface TrainingLoopResult<L = never> {
  /** The loss of every step of the run, resumed steps included. */
  readonly losses: number[];
  /** The `log` of every step of the run, resumed steps included ([] without a `log`). */
  readonly logs: L[];
  /** The step the run resumed from (0: from the start). */
  readonly resumedFrom: number;
}

/** The newest checkpoint of a loop folder. */
export interface LoopCheckpoint {
  readonly step: number;
  readonly dir: string;
  /** The loss of every step up to `step`. */
  readonly losses: number[];
  /** The `log` of every step up to `step` (undefined for a loop without one). */
  readonly logs?: unknown[];
}

const CHECKPOINT_NAME = /^checkpoint-(\d+)$/;
/** Temporaries of saveTrainingCheckpoint: `checkpoint-<step>.tmp-<tag>` and `.old-<tag>`. */
const TEMPORARY_NAME = /^checkpoint-\d+\.(tmp|old)-/;
const RECENT_STEPS = 20;

function checkpointSteps(dir: string): number[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .map((name) => CHECKPOINT_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** The newest checkpoint in the loop folder `dir` (a checkpoint folder is complete once it has its name), or undefined. */
export async function latestCheckpoint(dir: string): Promise<LoopCheckpoint | undefined> {
  const step = checkpointSteps(dir).at(-1);
  if (step === undefined) return undefined;
  const folder = path.join(dir, `checkpoint-${step}`);
  const state = await readTrainingCheckpointState(folder);
  const losses = state.extra.losses;
  const file = path.join(folder, 'trainer_state.json');
  if (state.step !== step) throw new Error(`${file}: step ${state.step} in a folder named for step ${step}; the checkpoint is corrupt, remove ${folder}`);
  if (!Array.isArray(losses) || losses.length !== step || !losses.every((l) => typeof l === 'number')) {
    throw new Error(`${file}: extra.losses is not the loss of each of the ${step} steps; the checkpoint is corrupt, remove ${folder}`);
  }
  const logs = state.extra.logs;
  if (logs !== undefined && (!Array.isArray(logs) || logs.length !== step))
    throw new Error(`${file}: extra.logs is not the log of each of the ${step} steps; the checkpoint is corrupt, remove ${folder}`);
  return { step, dir: folder, losses, ...(logs !== undefined ? { logs } : {}) };
}

/** Removes what a killed run left in `dir`: checkpoint temporaries and every checkpoint but the newest. */
function removeStale(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const steps = checkpointSteps(dir);
  for (const name of fs.readdirSync(dir)) {
    if (TEMPORARY_NAME.test(name)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  for (const step of steps.slice(0, -1)) fs.rmSync(path.join(dir, `checkpoint-${step}`), { recursive: true, force: true });
}

/**
 * Trains `options.steps` steps, resuming from the newest checkpoint in `options.dir`. A diverging
 * loss (TrainingDivergedError) stops the run with the last good checkpoint kept, and its message
 * says where that is.
 */
export async function runTrainingLoop<B, L = never>(options: TrainingLoopOptions<B, L>): Promise<TrainingLoopResult<L>> {
  const { dir, trainer, steps, checkpointEvery } = options;
  if (!isPositiveInt(steps)) throw new Error(`runTrainingLoop: steps must be a positive integer, got ${steps}`);
  if (!isPositiveInt(checkpointEvery)) throw new Error(`runTrainingLoop: checkpointEvery must be a positive integer, got ${checkpointEvery}`);
  if (trainer.config.accumulation_steps !== 1)
    throw new Error(
      `runTrainingLoop: the trainer accumulates ${trainer.config.accumulation_steps} micro-steps per step; the loop takes one batch per step (accumulation_steps 1)`,
    );
  removeStale(dir);
  const latest = await latestCheckpoint(dir);
  const losses = latest ? [...latest.losses] : [];
  if (latest && options.log && !latest.logs)
    throw new Error(
      `${latest.dir}: a checkpoint without the per-step log (extra.logs) this loop keeps; it was written by a run without one, so resume it without a log or start another folder`,
    );
  const logs = latest && options.log ? [...(latest.logs as L[])] : [];
  if (latest) await trainer.resume(latest.dir);
  const resumedFrom = trainer.iterations;
  if (resumedFrom !== (latest?.step ?? 0))
    throw new Error(
      `runTrainingLoop: the trainer has done ${resumedFrom} steps, its checkpoint folder ${dir} ${latest ? `is at step ${latest.step}` : 'is empty'}; pass a fresh trainer`,
    );
  if (latest && resumedFrom > steps)
    throw new Error(`${latest.dir}: a checkpoint after step ${resumedFrom}, past the run's ${steps} steps; this folder belongs to a longer run`);
  let saved = resumedFrom;
  for (let step = resumedFrom; step < steps; step++) {
    let result: StepResult;
    try {
      result = await trainer.step(options.batch(step));
    } catch (e) {
      if (e instanceof TrainingDivergedError) {
        e.message +=
          saved > 0
            ? ` The last good checkpoint (step ${saved}) is ${path.join(dir, `checkpoint-${saved}`)}; rerun to resume from it.`
            : ' No checkpoint was written yet; a rerun starts from step 0.';
      }
      throw e;
    }
    losses.push(result.loss);
    const entry = options.log ? await options.log() : undefined;
    if (options.log) logs.push(entry as L);
    const done = step + 1;
    if (done % checkpointEvery === 0 || done === steps) {
      await trainer.save(path.join(dir, `checkpoint-${done}`), options.log ? { losses, logs } : { losses });
      if (saved > 0) fs.rmSync(path.join(dir, `checkpoint-${saved}`), { recursive: true, force: true });
      saved = done;
    }
    const recent = losses.slice(-RECENT_STEPS);
    options.onStep?.({ done, total: steps, loss: recent.reduce((a, b) => a + b, 0) / recent.length, lr: result.lr, ...(options.log ? { log: entry } : {}) });
  }
  return { losses, logs, resumedFrom };
}
