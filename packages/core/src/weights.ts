import * as tf from '@tensorflow/tfjs-core';
import { tfSeed } from './random';
import { backendStrategy } from './backends/backend';
import type { Disposable } from './types';
import { isFloatDtype, numElements, serializeSafetensors, type TensorData, type WeightSource } from './safetensors';
import { fnv1a } from './fnv1a'; // per-parameter seeds that do not depend on construction order

/** Initial value of a fresh parameter. `uniform: b` draws from U(-b, b); `normal: s` from N(0, s²). */
export type Init = 'zeros' | 'ones' | { readonly uniform: number } | { readonly normal: number } | { readonly constant: number };

/**
 * Every parameter of a module tree, keyed by its torch/diffusers name and in torch layout (as in
 * the checkpoint). Frozen parameters are `tf.Tensor`, trainable ones `tf.Variable`. Owns the
 * tensors: `dispose()` frees them all.
 */
export class Parameters implements Disposable {
  private readonly entries = new Map<string, tf.Tensor>();
  private readonly layouts = new Map<string, tf.Tensor>();
  private disposed = false;

  /** @internal used by WeightScope */
  add(key: string, value: tf.Tensor): void {
    if (this.entries.has(key)) throw new Error(`parameter '${key}' is defined twice; two modules share one weight path`);
    this.entries.set(key, value);
  }

  /** @internal used by WeightScope */
  addLayout(key: string, value: tf.Tensor): void {
    if (this.layouts.has(key)) throw new Error(`parameter '${key}' has two load-time layouts`);
    this.layouts.set(key, value);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** The tensor of `key`. */
  get(key: string): tf.Tensor {
    const value = this.entries.get(key);
    if (!value) throw new Error(`no parameter '${key}'`);
    return value;
  }

  /**
   * The copy of `key`'s frozen tensor that a backend computes with, made at load time (e.g. a conv
   * weight as HWIO; see WeightScope.layout), if any. Not saved, not counted.
   */
  layoutOf(key: string): tf.Tensor | undefined {
    return this.layouts.get(key);
  }

  /** Number of scalar parameters. */
  numElements(): number {
    let n = 0;
    for (const value of this.entries.values()) n += value.size;
    return n;
  }

  trainableVariables(): tf.Variable[] {
    return [...this.entries.values()].filter((v): v is tf.Variable => v instanceof tf.Variable && v.trainable);
  }

  /** Serializes every parameter as safetensors bytes (F32), for small modules and browsers. */
  async toSafetensors(metadata: Record<string, string> = {}): Promise<Uint8Array> {
    const tensors: Record<string, TensorData> = {};
    for await (const [key, shape, data] of this.torchData()) tensors[key] = { dtype: 'F32', shape, data };
    return serializeSafetensors(tensors, metadata);
  }

  /**
   * Each parameter's data, one at a time (`[key, shape, data]`, keys sorted), so a multi-GB model
   * is never copied whole: at most one tensor's data is read out at a time.
   */
  async *torchData(): AsyncGenerator<[string, readonly number[], Float32Array]> {
    this.assertAlive();
    for (const [key, value] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      yield [key, value.shape, (await value.data()) as Float32Array];
    }
  }

  /** Shapes by key (what a safetensors header needs before any data is read). */
  torchShapes(): Map<string, readonly number[]> {
    return new Map([...this.entries].map(([k, value]) => [k, value.shape]));
  }

  /**
   * Overwrites every parameter from `source` (torch layout), strictly: every key must be present
   * with its shape and no extra key may exist. Only trainable (Variable) entries can be assigned.
   */
  assignFrom(source: WeightSource): void {
    this.assertAlive();
    const extra = source.keys().filter((k) => !this.entries.has(k));
    if (extra.length) throw new Error(`${source.name}: unexpected tensors ${formatKeys(extra)}; it was saved from a different configuration`);
    for (const [key, value] of this.entries) {
      if (!(value instanceof tf.Variable)) throw new Error(`parameter '${key}' is frozen and cannot be assigned`);
      const loaded = readTorch(source, key, value.shape);
      value.assign(loaded);
      loaded.dispose();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    for (const value of [...this.entries.values(), ...this.layouts.values()]) value.dispose();
    this.entries.clear();
    this.layouts.clear();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error('these parameters were disposed; the module can no longer be used');
  }
}

function formatKeys(keys: string[], max = 8): string {
  const shown = keys
    .slice(0, max)
    .map((k) => `'${k}'`)
    .join(', ');
  return keys.length > max ? `${shown} and ${keys.length - max} more` : shown;
}

function readTorch(source: WeightSource, key: string, torchShape: readonly number[]): tf.Tensor {
  const info = source.info(key);
  if (!info) {
    const parent = key.slice(0, key.lastIndexOf('.') + 1);
    const near = source.keys().filter((k) => k.startsWith(parent));
    throw new Error(
      `${source.name}: missing tensor '${key}' (expected shape [${torchShape}])` +
        (near.length ? `; tensors under '${parent}': ${formatKeys(near)}` : '') +
        '. Is this checkpoint for the same model and config?',
    );
  }
  if (info.shape.length !== torchShape.length || info.shape.some((d, i) => d !== torchShape[i])) {
    throw new Error(`${source.name}: tensor '${key}' has shape [${info.shape}], expected [${torchShape}]; the checkpoint does not match the config`);
  }
  if (!isFloatDtype(info.dtype)) throw new Error(`${source.name}: tensor '${key}' has dtype ${info.dtype}, expected a float dtype`);
  return backendStrategy().tensorFilledBy([...torchShape], (values) => source.readFloatsInto(key, values));
}

function initTensor(init: Init, shape: number[], seed: number): tf.Tensor {
  if (init === 'zeros') return tf.zeros(shape);
  if (init === 'ones') return tf.ones(shape);
  if ('constant' in init) return tf.fill(shape, init.constant);
  if ('uniform' in init) return tf.randomUniform(shape, -init.uniform, init.uniform, 'float32', tfSeed(seed));
  return tf.randomNormal(shape, 0, init.normal, 'float32', tfSeed(seed));
}

/**
 * The engine-wide name of the variable of parameter `key` (what `tf.variableGrads` keys its
 * gradients by): the key itself, or `key#2`, `key#3`, … while a live variable of another module
 * has that name.
 */
function variableName(key: string): string {
  const taken = tf.engine().registeredVariables;
  let name = key;
  for (let i = 2; name in taken; i++) name = `${key}#${i}`;
  return name;
}

interface ScopeRoot {
  readonly source?: WeightSource;
  readonly trainable: boolean;
  readonly seed: number;
  readonly ignore: readonly RegExp[];
  readonly params: Parameters;
  readonly used: Set<string>;
}

/**
 * Hands out parameters by dotted path while a module tree is built (cf. candle's VarBuilder):
 * `scope.pp('down_blocks').pp(0).param('conv.weight', [o, i, 3, 3], {init})`. A scope either
 * reads from a checkpoint (strict: a missing or mis-shaped tensor throws naming the key,
 * `finish()` throws on tensors nobody asked for) or initialises fresh parameters from a seed.
 */
export class WeightScope {
  private constructor(
    private readonly root: ScopeRoot,
    readonly prefix: string,
  ) {}

  /** Reads parameters from `source`. `ignore` lists keys that may be present and unused (e.g. CLIP's position_ids). */
  static fromSource(source: WeightSource, options: { trainable?: boolean; ignore?: readonly RegExp[] } = {}): WeightScope {
    return new WeightScope(
      { source, trainable: options.trainable ?? false, seed: 0, ignore: options.ignore ?? [], params: new Parameters(), used: new Set() },
      '',
    );
  }

  /** Creates fresh parameters with each param's `init`, seeded per key. */
  static fresh(options: { seed?: number; trainable?: boolean } = {}): WeightScope {
    return new WeightScope({ trainable: options.trainable ?? true, seed: options.seed ?? 0, ignore: [], params: new Parameters(), used: new Set() }, '');
  }

  /** A child scope: `scope.pp('attn1').pp('to_q')`. */
  pp(name: string | number): WeightScope {
    return new WeightScope(this.root, this.key(String(name)));
  }

  key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** Whether the checkpoint has `name` under this scope (for legacy-name fallbacks). Fresh scopes: false. */
  has(name: string): boolean {
    return this.root.source?.info(this.key(name)) !== undefined;
  }

  get isFresh(): boolean {
    return this.root.source === undefined;
  }

  /**
   * The parameter `name` of torch shape `torchShape`, kept in that layout. Trainable scopes return
   * a tf.Variable.
   */
  param(name: string, torchShape: readonly number[], options: { init?: Init } = {}): tf.Tensor {
    const key = this.key(name);
    const { source, trainable, seed, params, used } = this.root;
    if (!torchShape.every((d) => Number.isInteger(d) && d > 0)) throw new Error(`parameter '${key}': invalid shape [${torchShape}]`);
    let value = tf.tidy(() => (source ? readTorch(source, key, torchShape) : initTensor(options.init ?? 'zeros', [...torchShape], (seed ^ fnv1a(key)) >>> 0)));
    if (trainable) {
      const v = tf.variable(value, true, variableName(key));
      value.dispose();
      value = v;
    }
    used.add(key);
    params.add(key, value);
    return value;
  }

  /**
   * A copy of the parameter `name` (made by `param` before) in the layout a backend computes with,
   * made once, now, by `make` (which returns undefined for none). It is owned with the parameters
   * and freed with them, but neither saved nor counted. Only frozen parameters can have one: a
   * trainable variable changes as it trains.
   */
  layout(name: string, make: (param: tf.Tensor) => tf.Tensor | undefined): tf.Tensor | undefined {
    const key = this.key(name);
    const param = this.root.params.get(key);
    if (param instanceof tf.Variable) return undefined;
    const value = tf.tidy(() => make(param));
    if (value) this.root.params.addLayout(key, value);
    return value;
  }

  /**
   * Builds a module tree with this (root) scope and finishes it. If construction throws (a
   * missing or mis-shaped tensor), the parameters made so far are freed before rethrowing.
   */
  build<T>(construct: (scope: WeightScope) => T): { module: T; params: Parameters } {
    try {
      const module = construct(this);
      return { module, params: this.finish() };
    } catch (e) {
      this.root.params.dispose();
      throw e;
    }
  }

  /** Ends construction (root scope only): reports unexpected checkpoint tensors and returns the parameters. */
  finish(): Parameters {
    const { source, ignore, used, params } = this.root;
    if (source) {
      const unexpected = source.keys().filter((k) => !used.has(k) && !ignore.some((re) => re.test(k)));
      if (unexpected.length) {
        params.dispose();
        throw new Error(
          `${source.name}: unexpected tensors ${formatKeys(unexpected)}; the checkpoint has weights this config does not build. Check config.json.`,
        );
      }
    }
    return params;
  }
}

/** Element count of a torch shape (re-exported for modules that size their parameters). */
export { numElements };
