import * as tf from '@tensorflow/tfjs-core';
import { check, isFiniteNumber, isPositiveInt, resolveConfig, type Parameters } from '@png/core';
import { AdamW, type AdamWOptions } from './adamw';
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from './checkpoint_dir';
import type { LrSchedule } from './lr_schedule';

/** Trainer settings that are plain config (snake_case, as in a config file). */
export interface TrainerConfig {
  /** Global L2 norm the gradient is clipped to (torch.nn.utils.clip_grad_norm_); null: no clipping. */
  readonly clip_grad_norm: number | null;
  /** Micro-steps whose gradients are averaged into one update. */
  readonly accumulation_steps: number;
}

export const DEFAULT_TRAINER_CONFIG: TrainerConfig = Object.freeze({ clip_grad_norm: null, accumulation_steps: 1 });

/** Everything a Trainer needs. */
export interface TrainerOptions<B> extends Partial<TrainerConfig> {
  /** The trained variables by checkpoint key (see `trainableVariables`). Frozen weights stay out. */
  readonly variables: Readonly<Record<string, tf.Variable>>;
  /** The loss of one (micro-)batch; runs inside the trainer's tf.tidy and tf.variableGrads. */
  readonly lossFn: (batch: B) => tf.Scalar;
  readonly optimizer?: AdamWOptions;
  /** Learning rate per update (0-based); default: the optimizer's constant lr. */
  readonly schedule?: LrSchedule;
}

/** What one call of `Trainer.step` did. */
export interface StepResult {
  /** The update this micro-step belongs to (1-based: 1 for the first update). */
  readonly step: number;
  /** The micro-batch's loss. */
  readonly loss: number;
  /** The learning rate of this update. */
  readonly lr: number;
  /** Global L2 norm of the gradient accumulated so far, before clipping (on an applied step: of the whole update). */
  readonly gradNorm: number;
  /** Whether this micro-step completed an update (the last of `accumulation_steps`). */
  readonly applied: boolean;
}

/** The loss or the gradient norm was NaN or infinite. No update was applied; accumulated gradients were discarded. */
export class TrainingDivergedError extends Error {
  constructor(
    /** The update that failed (1-based); the variables hold the state after update `step − 1`. */
    readonly step: number,
    readonly quantity: 'loss' | 'gradient norm',
    readonly value: number,
    /** With gradient accumulation: [the failing micro-step (1-based), accumulation_steps]. */
    readonly microStep?: readonly [number, number],
  ) {
    super(
      `training diverged at step ${step}${microStep ? ` (micro-step ${microStep[0]} of ${microStep[1]})` : ''}: the ${quantity} is ${value}. ` +
        `No update was applied: the variables hold the state after step ${step - 1}. ` +
        'Lower the learning rate, lengthen the warm-up, set clip_grad_norm, or resume from the last checkpoint.',
    );
    this.name = 'TrainingDivergedError';
  }
}

function validate(c: TrainerConfig): void {
  check(
    c.clip_grad_norm === null || (isFiniteNumber(c.clip_grad_norm) && c.clip_grad_norm > 0),
    'TrainerConfig',
    'clip_grad_norm',
    'a finite number > 0, or null for no clipping',
    c.clip_grad_norm,
  );
  check(isPositiveInt(c.accumulation_steps), 'TrainerConfig', 'accumulation_steps', 'a positive integer', c.accumulation_steps);
}

/** The trainable variables of `params` by checkpoint key (frozen tensors left out): what a Trainer optimizes. */
export function trainableVariables(params: Parameters): Record<string, tf.Variable> {
  const out: Record<string, tf.Variable> = {};
  for (const key of params.keys()) {
    const t = params.get(key);
    if (t instanceof tf.Variable && t.trainable) out[key] = t;
  }
  return out;
}

/**
 * Trains any model given its variables and a loss: AdamW updates with a learning-rate schedule,
 * optional global-norm gradient clipping and gradient accumulation. Divergence (a NaN/Inf loss or
 * gradient norm) throws a TrainingDivergedError before anything is changed. Owns the optimizer
 * state and the accumulated gradients (`dispose()`), not the variables.
 */
export class Trainer<B> {
  readonly config: Readonly<TrainerConfig>;
  readonly optimizer: AdamW;
  private readonly variables: Readonly<Record<string, tf.Variable>>;
  private readonly keys: string[];
  private readonly lossFn: (batch: B) => tf.Scalar;
  private readonly schedule: LrSchedule;
  /** Sum of gradient/accumulation_steps over the micro-steps done in the current update. */
  private accumulated: Record<string, tf.Tensor> | undefined;
  private microSteps = 0;

  constructor(options: TrainerOptions<B>) {
    const { variables, lossFn, optimizer, schedule, ...config } = options;
    this.config = resolveConfig('TrainerConfig', DEFAULT_TRAINER_CONFIG, config, validate);
    this.variables = variables;
    this.keys = Object.keys(variables).sort();
    this.lossFn = lossFn;
    this.optimizer = new AdamW(variables, optimizer);
    this.schedule = schedule ?? (() => this.optimizer.config.lr);
  }

  /** Updates applied so far (saved as the checkpoint's step). */
  get iterations(): number {
    return this.optimizer.iterations;
  }

  /**
   * One micro-step: the loss and gradients of `batch`, accumulated; on the last micro-step of an
   * update, the accumulated gradient is clipped and applied. Throws TrainingDivergedError (and
   * discards the update's accumulated gradients) if the loss or the gradient norm is not finite.
   */
  async step(batch: B): Promise<StepResult> {
    const { accumulation_steps: k, clip_grad_norm: clip } = this.config;
    const step = this.optimizer.iterations + 1;
    const lr = this.schedule(step - 1);
    if (!(isFiniteNumber(lr) && lr >= 0))
      throw new Error(`Trainer: the schedule returned lr ${lr} for step ${step - 1}; a schedule must return finite numbers ≥ 0`);
    const { stats, grads } = this.gradients(batch);
    let loss: number;
    let gradNorm: number;
    try {
      [loss, gradNorm] = await stats.data();
    } catch (e) {
      tf.dispose(grads);
      throw e;
    } finally {
      stats.dispose();
    }
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      const micro = this.microSteps + 1;
      tf.dispose(grads);
      this.discardAccumulated();
      const [quantity, value] = Number.isFinite(loss) ? (['gradient norm', gradNorm] as const) : (['loss', loss] as const);
      throw new TrainingDivergedError(step, quantity, value, k > 1 ? [micro, k] : undefined);
    }
    const applied = this.microSteps + 1 === k;
    if (!applied) {
      tf.dispose(this.accumulated);
      this.accumulated = grads;
      this.microSteps++;
      return { step, loss, lr, gradNorm, applied };
    }
    try {
      const scale = clip !== null ? clip / (gradNorm + 1e-6) : 1; // torch's clip_coef
      tf.tidy(() => {
        const update = scale < 1 ? Object.fromEntries(this.keys.map((key) => [key, tf.mul(grads[key], scale)])) : grads;
        this.optimizer.applyGradients(update, lr);
      });
    } finally {
      tf.dispose(grads);
      this.discardAccumulated();
    }
    return { step, loss, lr, gradNorm, applied };
  }

  /**
   * Saves a training checkpoint folder (see saveTrainingCheckpoint) at the current step. Call it
   * between updates, not in the middle of gradient accumulation.
   */
  async save(dir: string, extra: object = {}): Promise<void> {
    if (this.microSteps > 0) {
      throw new Error(
        `Trainer.save: ${this.microSteps} of ${this.config.accumulation_steps} micro-steps of step ${this.iterations + 1} are accumulated; save after a step() that returned applied: true`,
      );
    }
    await saveTrainingCheckpoint(dir, { variables: this.variables, optimizer: this.optimizer, step: this.iterations, extra });
  }

  /** Restores variables and optimizer state from a checkpoint folder (strictly; see loadTrainingCheckpoint) and returns its `extra`. */
  async resume(dir: string): Promise<Record<string, unknown>> {
    this.discardAccumulated();
    const { extra } = await loadTrainingCheckpoint(dir, { variables: this.variables, optimizer: this.optimizer });
    return extra;
  }

  /** Frees the optimizer state and any accumulated gradients (the variables belong to the caller). */
  dispose(): void {
    this.discardAccumulated();
    this.optimizer.dispose();
  }

  /**
   * The micro-batch's loss, the gradients accumulated so far including this micro-batch
   * (Σ g/accumulation_steps, by key) and `stats` = [loss, global L2 norm of those gradients].
   */
  private gradients(batch: B): { stats: tf.Tensor1D; grads: Record<string, tf.Tensor> } {
    const k = this.config.accumulation_steps;
    return tf.tidy(() => {
      const list = this.keys.map((key) => this.variables[key]);
      const { value, grads: byName } = tf.variableGrads(() => this.lossFn(batch), list);
      const grads: Record<string, tf.Tensor> = {};
      for (const key of this.keys) {
        let g = byName[this.variables[key].name];
        if (!g)
          throw new Error(
            `Trainer: variable '${key}' received no gradient; lossFn does not use it. Leave it out of \`variables\` (freeze it) or use it in the loss.`,
          );
        if (k > 1) g = tf.div(g, k);
        grads[key] = this.accumulated ? tf.add(this.accumulated[key], g) : g;
      }
      const norms = this.keys.map((key) => tf.sqrt(tf.sum(tf.square(grads[key])))); // per-variable L2 norms
      const total = tf.sqrt(tf.sum(tf.square(tf.stack(norms)))); // torch: norm of the norms
      return { stats: tf.stack([value, total]) as tf.Tensor1D, grads };
    });
  }

  private discardAccumulated(): void {
    tf.dispose(this.accumulated);
    this.accumulated = undefined;
    this.microSteps = 0;
  }
}
