import type * as tf from '@tensorflow/tfjs-core';
import { HookRegistry, type ForwardContext, type WeightScope } from '@png/core';
import type { Attention } from './attention_processor';

/**
 * What every module of one model shares: the block-hook registry and the attention modules by
 * path (for `attnProcessors()` / `setAttnProcessor()`). One per model instance.
 */
export class ModelRuntime {
  readonly hooks = new HookRegistry<tf.Tensor>();
  readonly attentions = new Map<string, Attention>();
}

/**
 * A module whose dotted path (its weight scope prefix, e.g. `down_blocks.0.resnets.1`) can be
 * hooked: `hooked` runs the registered pre/post hooks around the module's own computation.
 */
export abstract class HookedModule {
  readonly path: string;

  constructor(
    scope: WeightScope,
    protected readonly runtime: ModelRuntime,
  ) {
    this.path = scope.prefix;
  }

  protected hooked<T extends tf.Tensor>(input: T, context: ForwardContext, compute: (x: T) => T): T {
    return hookedLeaf(this.runtime, this.path, input, context, compute);
  }
}

/**
 * Runs the hooks registered for `path` around `compute(input)`: for parameter-only leaves that
 * are no HookedModule (e.g. `conv_in`, `conv_norm_out`, a Transformer2DModel's `norm`).
 */
export function hookedLeaf<T extends tf.Tensor>(runtime: ModelRuntime, path: string, input: T, context: ForwardContext, compute: (x: T) => T): T {
  const hooks = runtime.hooks;
  if (hooks.size === 0) return compute(input);
  return hooks.post(path, compute(hooks.pre(path, input, context) as T), context) as T;
}
