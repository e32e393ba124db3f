import * as tf from '@tensorflow/tfjs-core';
import { recompute, type RecomputeOptions } from '../nn/recompute';
import type { ContextKey, ForwardContext } from './hooks';
import { sharedRuntime, type HookRegistry, type HookedModule } from './hooked_module';

export interface GradientCheckpointingOptions {
  /**
   * The trainable variables that the blocks, their hooks and processors read (default: every
   * trainable variable registered with the engine at each forward). A variable left out gets no
   * gradient from inside a block.
   */
  readonly variables?: readonly tf.Variable[];
}

/** The hook of each registry's gradient checkpointing, so that applying it again replaces it. */
const applied = new WeakMap<HookRegistry, () => void>();

/**
 * Gradient checkpointing of `blocks` (diffusers' `enable_gradient_checkpointing`): each block keeps
 * only its inputs for the gradient, which runs the block again (see `recompute`). Trades one more
 * forward of the blocks for the memory of their activations. Outputs are bit-identical; gradients
 * equal up to float rounding. A block's inputs include every tensor in the forward's context state;
 * what its hooks write into the context state or `outputs` becomes its output, so gradients flow
 * through adapter state and taps. The blocks must run through `HookedModule.hookedBlock`. Applying
 * it again to a model replaces the previous setting. Returns the function that turns it off.
 */
export function applyGradientCheckpointing(blocks: readonly HookedModule[], options: GradientCheckpointingOptions = {}): () => void {
  const { hooks } = sharedRuntime(blocks, 'applyGradientCheckpointing');
  applied.get(hooks)?.();
  const paths = new Set(blocks.map((b) => b.path));
  const remove = hooks.add((path) => paths.has(path), {
    newForward: (path, inputs, context, forward) =>
      checkpointedForward(path, inputs, context, forward, {
        variables: options.variables,
        aroundBackward: (backward) => hooks.aroundBackward(path, backward), // e.g. offloaded weights stay uploaded until the block's gradient is computed
      }),
  });
  const off = () => {
    remove();
    if (applied.get(hooks) === off) applied.delete(hooks);
  };
  applied.set(hooks, off);
  return off;
}

/**
 * Runs the block at `path`, `forward(inputs)` → its outputs, under `recompute`, whose inputs are
 * `inputs` plus the context's state tensors and whose outputs are the block's outputs plus the
 * context entries (state and `outputs`) the block wrote, which are then set in the context. A
 * tensor that is several of these (a block output a hook also records) stays one tensor.
 */
function checkpointedForward(
  path: string,
  inputs: readonly tf.Tensor[],
  context: ForwardContext,
  forward: (inputs: readonly tf.Tensor[]) => tf.Tensor[],
  options: RecomputeOptions,
): tf.Tensor[] {
  const stateKeys = context.tensorEntries().map(([key]) => key);
  // from the block's first run: its result count, the context entries it wrote, and which distinct tensor each of these is
  let written: { results: number; state: Array<ContextKey<tf.Tensor>>; outputs: string[]; slots: number[] } | undefined;
  const run = (...xs: tf.Tensor[]): tf.Tensor[] => {
    const restore = contextRestorer(context); // the recompute runs in the gradient, when the context holds later values
    try {
      for (const [i, key] of stateKeys.entries()) context.set(key, xs[inputs.length + i]);
      const stateBefore = new Map(context.tensorEntries());
      const outputsBefore = { ...context.outputs };
      const results = forward(xs.slice(0, inputs.length));
      if (!written) {
        const state = context
          .tensorEntries()
          .filter(([key, t]) => stateBefore.get(key) !== t)
          .map(([key]) => key);
        const outputs = Object.keys(context.outputs).filter((key) => context.outputs[key] !== outputsBefore[key]);
        const all = [...results, ...state.map((key) => context.get(key)), ...outputs.map((key) => context.outputs[key])];
        written = { results: results.length, state, outputs, slots: all.map((t) => all.indexOf(t)) };
      }
      const entries = [...written.state.map((key) => context.get(key)), ...written.outputs.map((key) => context.outputs[key])];
      const before = [...written.state.map((key) => stateBefore.get(key)), ...written.outputs.map((key) => outputsBefore[key])];
      const missing = [...written.state.map((key) => `state '${key.name}'`), ...written.outputs.map((key) => `outputs['${key}']`)].filter(
        (_, i) => !(entries[i] instanceof tf.Tensor) || entries[i] === before[i],
      );
      if (missing.length)
        throw new Error(`gradient checkpointing: run again for its gradient, '${path}' did not write ${missing.join(', ')} as in the forward`);
      const { slots } = written;
      return [...results, ...(entries as tf.Tensor[])].filter((_, i) => slots[i] === i);
    } finally {
      restore();
    }
  };
  const distinct = recompute(run, [...inputs, ...stateKeys.map((key) => context.require<tf.Tensor>(key))], options);
  if (!written) throw new Error(`gradient checkpointing: '${path}' was not run by its forward; recompute must call the block once`);
  const { results, state, outputs, slots } = written;
  const firsts = slots.filter((slot, i) => slot === i); // the position of each distinct tensor
  const outs = slots.map((slot) => distinct[firsts.indexOf(slot)]);
  for (const [i, key] of state.entries()) context.set(key, outs[results + i]);
  for (const [i, key] of outputs.entries()) context.outputs[key] = outs[results + state.length + i];
  return outs.slice(0, results);
}

/**
 * The context's state tensors and outputs as they are now; calling the result puts them back
 * (entries added since are removed).
 */
function contextRestorer(context: ForwardContext): () => void {
  const state = new Map(context.tensorEntries());
  const outputs = { ...context.outputs };
  return () => {
    for (const [key] of context.tensorEntries()) if (!state.has(key)) context.delete(key);
    for (const [key, t] of state) context.set(key, t);
    for (const key of Object.keys(context.outputs)) if (!(key in outputs)) delete context.outputs[key];
    Object.assign(context.outputs, outputs);
  };
}
