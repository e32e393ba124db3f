import type * as tf from '@tensorflow/tfjs-core';
import type { WeightScope } from '../weights';
import { matchesPath, type BlockHook, type ForwardContext, type PathMatch } from './hooks';

/** Block hooks keyed by path match; `add` returns the function that removes the hook. */
export class HookRegistry {
  private readonly hooks: Array<{ match: PathMatch; hook: BlockHook }> = [];

  add(match: PathMatch, hook: BlockHook): () => void {
    const entry = { match, hook };
    this.hooks.push(entry);
    return () => {
      const i = this.hooks.indexOf(entry);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /**
   * Runs `compute(input)` as the module at `path` whose forward reads tensors besides `input` (a
   * leaf): the matching pre-hooks, then the post-hooks, in order of registration.
   */
  run<T extends tf.Tensor>(path: string, input: T, context: ForwardContext, compute: (x: T) => T): T {
    if (this.hooks.length === 0) return compute(input);
    if (this.hooks.some(({ match, hook }) => hook.newForward && matchesPath(match, path))) {
      throw new Error(
        `HookRegistry: '${path}' reads tensors it is not given as inputs, so a newForward hook (gradient checkpointing) cannot run it; apply it to the block around it`,
      );
    }
    return this.post(path, compute(this.pre(path, input, context) as T), context) as T;
  }

  /**
   * Runs `compute(inputs)` as the block at `path`, which reads no tensor but `inputs` and its
   * weights: the matching newForward hooks (the first registered outermost) around the pre-hooks
   * on `inputs[0]`, `compute` and the post-hooks on its first output.
   */
  runBlock(path: string, inputs: readonly tf.Tensor[], context: ForwardContext, compute: (inputs: readonly tf.Tensor[]) => tf.Tensor[]): tf.Tensor[] {
    if (this.hooks.length === 0) return compute(inputs);
    let forward = (xs: readonly tf.Tensor[]): tf.Tensor[] => {
      const [first, ...rest] = compute([this.pre(path, xs[0], context), ...xs.slice(1)]);
      return [this.post(path, first, context), ...rest];
    };
    for (const hook of this.matching(path).reverse()) {
      const { newForward } = hook;
      if (!newForward) continue;
      const inner = forward;
      forward = (xs) => newForward.call(hook, path, xs, context, inner);
    }
    return forward(inputs);
  }

  /** Runs `backward` inside every matching `aroundBackward` hook (the first registered outermost). */
  aroundBackward(path: string, backward: () => void): void {
    let run = backward;
    for (const hook of this.matching(path).reverse()) {
      const { aroundBackward } = hook;
      if (!aroundBackward) continue;
      const inner = run;
      run = () => aroundBackward.call(hook, path, inner);
    }
    run();
  }

  private matching(path: string): BlockHook[] {
    return this.hooks.filter(({ match }) => matchesPath(match, path)).map(({ hook }) => hook);
  }

  /** Applies every matching pre-hook in order of registration. */
  private pre(path: string, input: tf.Tensor, context: ForwardContext): tf.Tensor {
    for (const { match, hook } of this.hooks) {
      if (hook.preForward && matchesPath(match, path)) input = hook.preForward(path, input, context) ?? input;
    }
    return input;
  }

  /** Applies every matching post-hook in order of registration. */
  private post(path: string, output: tf.Tensor, context: ForwardContext): tf.Tensor {
    for (const { match, hook } of this.hooks) {
      if (hook.postForward && matchesPath(match, path)) output = hook.postForward(path, output, context) ?? output;
    }
    return output;
  }
}

/**
 * What every module of one model shares: the block-hook registry and the hooked modules by path
 * (in construction order, cf. torch's `named_modules`). One per model instance.
 */
export class ModelRuntime {
  readonly hooks = new HookRegistry();
  readonly modules = new Map<string, HookedModule>();
}

/**
 * A module whose dotted path (its weight scope prefix, e.g. `down_blocks.0.resnets.1`) can be
 * hooked: `hooked` / `hookedBlock` run the registered hooks around the module's own computation.
 */
export abstract class HookedModule {
  readonly path: string;

  constructor(
    scope: WeightScope,
    readonly runtime: ModelRuntime,
  ) {
    this.path = scope.prefix;
    runtime.modules.set(this.path, this);
  }

  /** The forward of a module that may read tensors besides `input` (see HookRegistry.run). */
  protected hooked<T extends tf.Tensor>(input: T, context: ForwardContext, compute: (x: T) => T): T {
    return this.runtime.hooks.run(this.path, input, context, compute);
  }

  /**
   * The forward of a block that reads no tensor but `inputs` and its weights, so that hooks may
   * run it again (gradient checkpointing; see HookRegistry.runBlock). Pre-hooks see `inputs[0]`,
   * post-hooks the first output.
   */
  protected hookedBlock(inputs: readonly tf.Tensor[], context: ForwardContext, compute: (inputs: readonly tf.Tensor[]) => tf.Tensor[]): tf.Tensor[] {
    return this.runtime.hooks.runBlock(this.path, inputs, context, compute);
  }
}

/**
 * Runs the hooks registered for `path` around `compute(input)`: for parameter-only leaves that
 * are no HookedModule (e.g. `conv_in`, `conv_norm_out`, a Transformer2DModel's `norm`).
 */
export function hookedLeaf<T extends tf.Tensor>(runtime: ModelRuntime, path: string, input: T, context: ForwardContext, compute: (x: T) => T): T {
  return runtime.hooks.run(path, input, context, compute);
}

/** The one runtime that `blocks` share (what a hook module registers its hooks with). */
export function sharedRuntime(blocks: readonly HookedModule[], caller: string): ModelRuntime {
  const runtime = blocks[0]?.runtime;
  if (!runtime) throw new Error(`${caller}: no blocks given`);
  const other = blocks.find((b) => b.runtime !== runtime);
  if (other) throw new Error(`${caller}: '${other.path}' belongs to another model than '${blocks[0].path}'; apply it to one model's blocks at a time`);
  return runtime;
}
