import * as tf from '@tensorflow/tfjs-core';

export interface RecomputeOptions {
  /**
   * The trainable variables `fn` reads (default: every trainable variable registered with the
   * engine when `recompute` is called). A variable left out receives no gradient through `fn`.
   */
  readonly variables?: readonly tf.Variable[];
  /**
   * Runs around the recompute of `fn` and its backpropagation, in the gradient: e.g. to keep
   * weights that `fn` evicts after use uploaded until its gradients are computed.
   */
  readonly aroundBackward?: (backward: () => void) => void;
}

/**
 * Gradient checkpointing (cf. `torch.utils.checkpoint`): `fn(...inputs)` without keeping its
 * intermediates for the gradient. Only `inputs` are saved; the gradient runs `fn` again under a
 * tape and backpropagates through it, to `inputs` and to the trainable `variables` (a variable or
 * input `fn` does not reach gets a zero gradient). `fn` must return the same float32 tensors,
 * shape for shape, each time it runs, and must not dispose its inputs.
 *
 * Outputs are bit-identical to `fn(...inputs)`; the caller owns them. Memory: one extra copy of
 * the outputs while this call runs (a tfjs custom gradient has one output tensor, so the outputs
 * travel flattened and concatenated, then split again).
 */
export function recompute(fn: (...inputs: tf.Tensor[]) => tf.Tensor[], inputs: readonly tf.Tensor[], options: RecomputeOptions = {}): tf.Tensor[] {
  const variables = options.variables ?? Object.values(tf.engine().registeredVariables).filter((v) => v.trainable);
  let shapes: number[][] | undefined; // of fn's outputs, from its first run
  const flatten = (outputs: tf.Tensor[]): tf.Tensor1D => {
    outputs.forEach((o, i) => {
      if (o.dtype !== 'float32') throw new Error(`recompute: output ${i} of fn is ${o.dtype}; only float32 outputs have gradients`);
    });
    if (outputs.length === 0) throw new Error('recompute: fn returned no tensors');
    return tf.concat(outputs.map((o) => tf.reshape(o, [-1]))) as tf.Tensor1D; // [Σ output sizes]
  };
  const n = inputs.length;
  const checkpointed = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    save(args.slice(0, n) as tf.Tensor[]);
    const outputs = fn(...(args.slice(0, n) as tf.Tensor[]));
    shapes = outputs.map((o) => o.shape);
    return {
      value: flatten(outputs),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        let grads: tf.Tensor[] = [];
        const backward = () => {
          grads = tf.tidy(() =>
            backpropagate(
              () => {
                const outputs = fn(...saved);
                const again = outputs.map((o) => o.shape);
                if (JSON.stringify(again) !== JSON.stringify(shapes))
                  throw new Error(`recompute: fn returned shapes ${JSON.stringify(again)} when run again, ${JSON.stringify(shapes)} the first time`);
                return flatten(outputs);
              },
              [...saved, ...variables],
              dy,
            ),
          );
        };
        if (options.aroundBackward) options.aroundBackward(backward);
        else backward();
        return grads;
      },
    };
  }) as Parameters<typeof tf.customGrad>[0]);
  return tf.tidy(() => {
    const joined = checkpointed(...inputs, ...variables); // [Σ output sizes]
    const outShapes = shapes;
    if (!outShapes) throw new Error('recompute: fn was not run by the forward');
    // a split saves nothing for the gradient (slices would keep `joined`); tfjs' split into one piece has a broken gradient
    const pieces =
      outShapes.length === 1
        ? [joined]
        : tf.split(
            joined,
            outShapes.map((s) => tf.util.sizeFromShape(s)),
          ); // [size of output i] each
    return pieces.map((p, i) => tf.reshape(p, outShapes[i]));
  });
}

/**
 * d(Σ dy · f())/d xs, zeros for the xs `f` does not reach. Runs inside another gradient's
 * backpropagation: tfjs' `gradients` drops the engine's active tape when it ends (it assumes it is
 * the outermost one), so the tape of the backpropagation this runs in is put back afterwards.
 */
function backpropagate(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  const engine = tf.engine();
  const outerTape = engine.state.activeTape;
  try {
    const { grads } = engine.gradients(f, xs, dy, true);
    return xs.map((x, i) => grads[i] ?? tf.zeros(x.shape));
  } finally {
    engine.state.activeTape = outerTape;
  }
}
