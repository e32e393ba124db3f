import * as tf from '@tensorflow/tfjs-core';
import { check, isFiniteNumber, isNonNegativeInt, resolveConfig } from '@png/core';

/** AdamW hyper-parameters (torch.optim.AdamW's names and defaults, except lr: the paper's 1e-4). */
export interface AdamWConfig {
  /** Learning rate used when `applyGradients` is given none (a Trainer passes its schedule's value). */
  readonly lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  /** Decoupled weight decay: each step multiplies a decayed variable by (1 − lr·weight_decay). */
  readonly weight_decay: number;
}

export const DEFAULT_ADAMW_CONFIG: AdamWConfig = Object.freeze({ lr: 1e-4, betas: [0.9, 0.999] as const, eps: 1e-8, weight_decay: 1e-2 });

/** AdamW options: the config plus which variables skip weight decay or take another learning rate. */
export interface AdamWOptions extends Partial<AdamWConfig> {
  /** True for variable keys excluded from weight decay (commonly norm scales, biases, gates). Default: none. */
  readonly noDecay?: (key: string) => boolean;
  /**
   * The factor on the learning rate of each variable key (torch's per-param-group lr, e.g. 10 for
   * gates): it scales both the step and the decoupled decay. Default: 1 for every key.
   */
  readonly lrMultiplier?: (key: string) => number;
}

/** The optimizer state a checkpoint needs: the number of updates applied and both moments by variable key. */
export interface AdamWState {
  readonly iterations: number;
  readonly m: Readonly<Record<string, tf.Tensor>>;
  readonly v: Readonly<Record<string, tf.Tensor>>;
}

function validate(c: AdamWConfig): void {
  check(isFiniteNumber(c.lr) && c.lr >= 0, 'AdamWConfig', 'lr', 'a finite number ≥ 0', c.lr);
  check(
    Array.isArray(c.betas) && c.betas.length === 2 && c.betas.every((b) => isFiniteNumber(b) && b >= 0 && b < 1),
    'AdamWConfig',
    'betas',
    'two numbers in [0, 1), e.g. [0.9, 0.999]',
    c.betas,
  );
  check(isFiniteNumber(c.eps) && c.eps > 0, 'AdamWConfig', 'eps', 'a finite number > 0', c.eps);
  check(isFiniteNumber(c.weight_decay) && c.weight_decay >= 0, 'AdamWConfig', 'weight_decay', 'a finite number ≥ 0', c.weight_decay);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Adam with decoupled weight decay (Loshchilov & Hutter), the exact update of torch.optim.AdamW
 * (amsgrad off) for step t with gradient g:
 *
 *     p ← p·(1 − lr·wd)                      (skipped for keys where noDecay(key))
 *     m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
 *     p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
 *
 * with lr·lrMultiplier(key) in place of lr for keys given another factor (torch's param groups).
 * Works on a named map of variables (key = checkpoint key). The moments are allocated at
 * construction (zeros, the variables' shapes) and owned by the optimizer: call `dispose()`.
 */
export class AdamW {
  readonly config: Readonly<AdamWConfig>;
  private readonly keys: string[];
  private readonly decay: ReadonlySet<string>;
  /** The keys whose learning rate is scaled, with their factor (≠ 1). */
  private readonly multipliers: ReadonlyMap<string, number>;
  private readonly m: Record<string, tf.Variable> = {};
  private readonly v: Record<string, tf.Variable> = {};
  private t = 0;

  constructor(
    private readonly variables: Readonly<Record<string, tf.Variable>>,
    options: AdamWOptions = {},
  ) {
    const { noDecay, lrMultiplier, ...config } = options;
    this.config = resolveConfig('AdamWConfig', DEFAULT_ADAMW_CONFIG, config, validate);
    this.keys = Object.keys(variables).sort();
    if (this.keys.length === 0) throw new Error('AdamW: no variables to optimize; pass the trainable variables by checkpoint key');
    this.decay = new Set(this.keys.filter((k) => !(noDecay?.(k) ?? false)));
    const multipliers = new Map<string, number>();
    for (const key of this.keys) {
      const factor = lrMultiplier?.(key) ?? 1;
      if (!(isFiniteNumber(factor) && factor >= 0)) throw new Error(`AdamW: the lr multiplier of '${key}' is ${factor}; it must be a finite number ≥ 0`);
      if (factor !== 1) multipliers.set(key, factor);
    }
    this.multipliers = multipliers;
    const seen = new Map<tf.Variable, string>();
    for (const key of this.keys) {
      const p = variables[key];
      if (!(p instanceof tf.Variable)) throw new Error(`AdamW: '${key}' is not a tf.Variable; frozen weights must not be passed to the optimizer`);
      if (!p.trainable) throw new Error(`AdamW: '${key}' is a non-trainable variable; leave it out of the optimized variables or make it trainable`);
      if (seen.has(p)) throw new Error(`AdamW: '${seen.get(p)}' and '${key}' are the same variable; pass each variable once`);
      if (p.dtype !== 'float32') throw new Error(`AdamW: '${key}' has dtype ${p.dtype}; only float32 variables can be optimized`);
      seen.set(p, key);
    }
    for (const key of this.keys) {
      this.m[key] = tf.tidy(() => tf.variable(tf.zerosLike(variables[key]), false));
      this.v[key] = tf.tidy(() => tf.variable(tf.zerosLike(variables[key]), false));
    }
  }

  /** Number of updates applied so far (torch's `state['step']`). */
  get iterations(): number {
    return this.t;
  }

  /** Whether `key` receives weight decay. */
  decays(key: string): boolean {
    return this.decay.has(key);
  }

  /** The factor on the learning rate of `key` (1 unless `lrMultiplier` said otherwise). */
  lrMultiplier(key: string): number {
    return this.multipliers.get(key) ?? 1;
  }

  /**
   * Applies one update. `grads` must hold a gradient of each variable's shape for every key (no
   * more, no fewer); `lr` defaults to `config.lr`. Runs in tf.tidy; the caller keeps `grads`.
   */
  applyGradients(grads: Readonly<Record<string, tf.Tensor>>, lr: number = this.config.lr): void {
    if (!(isFiniteNumber(lr) && lr >= 0)) throw new Error(`AdamW.applyGradients: lr must be a finite number ≥ 0, got ${lr}`);
    this.checkKeys('AdamW.applyGradients: gradients', grads);
    const [b1, b2] = this.config.betas;
    const t = this.t + 1;
    const bc1 = 1 - b1 ** t;
    const bc2Sqrt = Math.sqrt(1 - b2 ** t);
    tf.tidy(() => {
      const decayFactor = tf.scalar(1 - lr * this.config.weight_decay);
      const beta1 = tf.scalar(b1);
      const beta2 = tf.scalar(b2);
      const oneMinusB1 = tf.scalar(1 - b1);
      const oneMinusB2 = tf.scalar(1 - b2);
      const stepSize = tf.scalar(lr / bc1);
      const bc2 = tf.scalar(bc2Sqrt);
      const eps = tf.scalar(this.config.eps);
      for (const key of this.keys) {
        const p = this.variables[key];
        const g = grads[key];
        const m = this.m[key];
        const v = this.v[key];
        const factor = this.multipliers.get(key); // this key's lr is lr·factor
        if (this.decay.has(key)) p.assign(tf.mul(p, factor === undefined ? decayFactor : 1 - lr * factor * this.config.weight_decay));
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, oneMinusB1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), oneMinusB2)));
        const denom = tf.add(tf.div(tf.sqrt(v), bc2), eps);
        p.assign(tf.sub(p, tf.mul(factor === undefined ? stepSize : (lr * factor) / bc1, tf.div(m, denom))));
      }
    });
    this.t = t;
  }

  /** The current state. Its tensors belong to the optimizer and change with the next update: read them, do not dispose them. */
  state(): AdamWState {
    return { iterations: this.t, m: { ...this.m }, v: { ...this.v } };
  }

  /**
   * Restores a state saved with `state()` (copies its tensors; the caller keeps them). Strict:
   * every variable key must have an `m` and a `v` of its shape, and no other key may appear.
   */
  loadState(state: AdamWState): void {
    if (!isNonNegativeInt(state.iterations)) throw new Error(`AdamW.loadState: iterations must be an integer ≥ 0, got ${state.iterations}`);
    this.checkKeys('AdamW.loadState: m', state.m);
    this.checkKeys('AdamW.loadState: v', state.v);
    for (const key of this.keys) {
      this.m[key].assign(state.m[key]);
      this.v[key].assign(state.v[key]);
    }
    this.t = state.iterations;
  }

  /** Frees the moment estimates (not the variables, which the caller owns). */
  dispose(): void {
    tf.dispose([...Object.values(this.m), ...Object.values(this.v)]);
  }

  private checkKeys(what: string, tensors: Readonly<Record<string, tf.Tensor>>): void {
    const missing = this.keys.filter((k) => !(k in tensors));
    const extra = Object.keys(tensors).filter((k) => !(k in this.variables));
    if (missing.length || extra.length) {
      throw new Error(
        `${what} do not match the optimized variables:` +
          (missing.length ? ` missing ${missing.map((k) => `'${k}'`).join(', ')}` : '') +
          (extra.length ? ` unexpected ${extra.map((k) => `'${k}'`).join(', ')}` : ''),
      );
    }
    for (const key of this.keys) {
      const want = this.variables[key].shape;
      const got = tensors[key].shape;
      if (!sameShape(got, want)) throw new Error(`${what}: '${key}' has shape [${got}], expected [${want}]`);
    }
  }
}
