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
export interface BlockHook {
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook that only observes returns nothing (void); with `undefined` every observing hook would need `return undefined`
  preForward?(path: string, input: tf.Tensor, context: ForwardContext): tf.Tensor | void;
  // biome-ignore lint/suspicious/noConfusingVoidType: as preForward's
  postForward?(path: string, output: tf.Tensor, context: ForwardContext): tf.Tensor | void;
  /**
   * Runs the module in place of its forward (cf. diffusers' `ModelHook.new_forward`): `forward`
   * runs the pre-hooks, the module and the post-hooks on `inputs`, and may be called again (gradient
   * checkpointing does so in the gradient). Only a block that passes every tensor it reads as
   * `inputs` (`HookedModule.hookedBlock`) can be run so.
   */
  newForward?(path: string, inputs: readonly tf.Tensor[], context: ForwardContext, forward: (inputs: readonly tf.Tensor[]) => tf.Tensor[]): tf.Tensor[];
  /**
   * Runs around the backward of a block that a `newForward` hook recomputes in the gradient (its
   * forward runs again, then backpropagates): e.g. to keep offloaded weights uploaded until then.
   */
  aroundBackward?(path: string, backward: () => void): void;
}

/** A path matcher: an exact path, a RegExp, or a predicate. */
export type PathMatch = string | RegExp | ((path: string) => boolean);

export function matchesPath(match: PathMatch, path: string): boolean {
  if (typeof match === 'string') return match === path;
  if (match instanceof RegExp) return match.test(path);
  return match(path);
}
