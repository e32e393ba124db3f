import * as tf from '@tensorflow/tfjs-core';

/**
 * The key of one typed entry of a {@link ForwardContext}, made by {@link contextKey}. Entries are
 * found by key identity (two keys of one name are two entries); `name` is for messages.
 */
export interface ContextKey<T> {
  readonly name: string;
  /** Never set: makes ContextKey<T> invariant in T. */
  readonly valueType?: (value: T) => T;
}

/** A new key for a ForwardContext entry holding a T (e.g. `contextKey<tf.Tensor3D>('eipa/phrases')`). */
export function contextKey<T>(name: string): ContextKey<T> {
  return Object.freeze({ name });
}

/**
 * Per-forward state shared by a model and the hooks/processors attached to it (cf. diffusers'
 * `cross_attention_kwargs` and hook StateManager), typed by {@link ContextKey}. Tensors put here
 * are freed with the forward's `tidy` unless the forward returns them; models return
 * `context.outputs` for that purpose.
 */
export class ForwardContext {
  private readonly state = new Map<object, unknown>();
  /** Tensors that hooks want returned from the forward (e.g. feature taps, phrase states). */
  readonly outputs: Record<string, tf.Tensor> = {};

  get<T>(key: ContextKey<T>): T | undefined {
    return this.state.get(key) as T | undefined;
  }
  require<T>(key: ContextKey<T>): T {
    if (!this.state.has(key)) throw new Error(`ForwardContext: no '${key.name}'; the adapter that needs it was attached without its inputs`);
    return this.state.get(key) as T;
  }
  set<T>(key: ContextKey<T>, value: T): this {
    this.state.set(key, value);
    return this;
  }
  has<T>(key: ContextKey<T>): boolean {
    return this.state.has(key);
  }
  delete<T>(key: ContextKey<T>): void {
    this.state.delete(key);
  }
  /** The state entries whose value is a tensor (what gradient checkpointing saves and restores). */
  tensorEntries(): Array<[ContextKey<tf.Tensor>, tf.Tensor]> {
    return [...this.state].filter((e): e is [ContextKey<tf.Tensor>, tf.Tensor] => e[1] instanceof tf.Tensor);
  }
}

/**
 * Runs around a module identified by its dotted path (cf. diffusers' ModelHook). `preForward` may
 * replace the module's input tensor, `postForward` its output. Both run inside the model's tidy.
 */
export interface BlockHook<T = tf.Tensor> {
  preForward?(path: string, input: T, context: ForwardContext): T | void;
  postForward?(path: string, output: T, context: ForwardContext): T | void;
}

/** A path matcher: an exact path, a RegExp, or a predicate. */
export type PathMatch = string | RegExp | ((path: string) => boolean);

export function matchesPath(match: PathMatch, path: string): boolean {
  if (typeof match === 'string') return match === path;
  if (match instanceof RegExp) return match.test(path);
  return match(path);
}

/** Block hooks keyed by path match; `add` returns the function that removes the hook. */
export class HookRegistry<T = tf.Tensor> {
  private readonly hooks: Array<{ match: PathMatch; hook: BlockHook<T> }> = [];

  add(match: PathMatch, hook: BlockHook<T>): () => void {
    const entry = { match, hook };
    this.hooks.push(entry);
    return () => {
      const i = this.hooks.indexOf(entry);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  get size(): number {
    return this.hooks.length;
  }

  /** Applies every matching pre-hook in order of registration. */
  pre(path: string, input: T, context: ForwardContext): T {
    for (const { match, hook } of this.hooks) {
      if (hook.preForward && matchesPath(match, path)) input = hook.preForward(path, input, context) ?? input;
    }
    return input;
  }

  /** Applies every matching post-hook in order of registration. */
  post(path: string, output: T, context: ForwardContext): T {
    for (const { match, hook } of this.hooks) {
      if (hook.postForward && matchesPath(match, path)) output = hook.postForward(path, output, context) ?? output;
    }
    return output;
  }
}
