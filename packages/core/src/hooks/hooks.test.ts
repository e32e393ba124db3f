import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../backends/backend';
import { expectClose, expectNoLeak } from '../testing';
import { WeightScope } from '../weights';
import { applyGradientCheckpointing } from './gradient_checkpointing';
import { applyGroupOffloading } from './group_offloading';
import { HookRegistry, HookedModule, ModelRuntime, hookedLeaf } from './hooked_module';
import { ForwardContext } from './hooks';

/** A block that reads two tensors: tanh((x + y) · weight), weight [3]. */
class Block extends HookedModule {
  readonly weight: tf.Tensor;
  runs = 0;

  constructor(scope: WeightScope, runtime: ModelRuntime) {
    super(scope, runtime);
    this.weight = scope.param('weight', [3], { init: { uniform: 1 } });
  }

  forward(x: tf.Tensor, y: tf.Tensor, context: ForwardContext): tf.Tensor {
    return this.hookedBlock([x, y], context, ([a, b]) => {
      this.runs++;
      return [tf.tanh(tf.mul(tf.add(a, b), this.weight))];
    })[0];
  }
}

/** Two blocks of one model, frozen weights `blocks.0.weight`, `blocks.1.weight`. */
function model() {
  const scope = WeightScope.fresh({ seed: 1, trainable: false });
  const runtime = new ModelRuntime();
  const blocks = [new Block(scope.pp('blocks').pp(0), runtime), new Block(scope.pp('blocks').pp(1), runtime)];
  return { runtime, blocks, params: scope.finish() };
}

describe('HookRegistry', () => {
  beforeAll(() => setBackend('cpu'));

  it('runs newForward hooks around the pre- and post-hooks, the first registered outermost, and aroundBackward likewise', () => {
    const hooks = new HookRegistry();
    const events: string[] = [];
    const context = new ForwardContext();
    for (const name of ['a', 'b']) {
      hooks.add('block', {
        preForward: () => void events.push(`pre ${name}`),
        postForward: () => void events.push(`post ${name}`),
        newForward: (_, inputs, __, forward) => {
          events.push(`enter ${name}`);
          const out = forward(inputs);
          events.push(`leave ${name}`);
          return out;
        },
        aroundBackward: (_, backward) => {
          events.push(`around ${name}`);
          backward();
        },
      });
    }
    hooks.add('other', { preForward: () => void events.push('other') });
    const x = tf.scalar(1);
    hooks.runBlock('block', [x], context, (inputs) => {
      events.push('compute');
      return [...inputs];
    });
    hooks.aroundBackward('block', () => events.push('backward'));
    expect(events).toEqual(['enter a', 'enter b', 'pre a', 'pre b', 'compute', 'post a', 'post b', 'leave b', 'leave a', 'around a', 'around b', 'backward']);
    x.dispose();
  });

  it('refuses to run a newForward hook around a leaf, which reads tensors it is not given', () => {
    const runtime = new ModelRuntime();
    runtime.hooks.add('conv_in', { newForward: (_, inputs, __, forward) => forward(inputs) });
    const x = tf.scalar(1);
    expect(() => hookedLeaf(runtime, 'conv_in', x, new ForwardContext(), (t) => t)).toThrow("HookRegistry: 'conv_in' reads tensors it is not given as inputs");
    x.dispose();
  });
});

describe.each(['cpu', 'wasm'] as const)('gradient checkpointing and group offloading over HookedModule blocks on %s', (backend) => {
  beforeAll(() => setBackend(backend));

  it('give the outputs and gradients of the plain blocks; offloaded weights leave the backend between uses', async () => {
    const { blocks, params } = model();
    const gate = tf.variable(tf.tensor1d([0.5, -1, 2]), true, `gate_${backend}`);
    const [x, y] = [tf.tensor1d([0.1, 0.2, 0.3]), tf.tensor1d([1, -2, 0.5])];
    // the gate is read by a hook inside the second block, so its gradient comes from a recompute there
    blocks[0].runtime.hooks.add('blocks.1', { postForward: (_, out) => tf.mul(out, gate) });
    const run = (a: tf.Tensor) => {
      const context = new ForwardContext();
      return tf.sum(blocks[1].forward(blocks[0].forward(a, y, context), y, context)) as tf.Scalar;
    };
    const gradients = () => {
      const { value, grads } = tf.variableGrads(() => run(x), [gate]);
      return { value, dGate: grads[gate.name], dx: tf.grad(run)(x) };
    };
    const plain = gradients();

    const offOffload = await applyGroupOffloading(blocks, params);
    const weights = tf.backend().numDataIds();
    applyGradientCheckpointing(blocks, { variables: [gate] });
    const offCheckpointing = applyGradientCheckpointing(blocks, { variables: [gate] }); // replaces the first
    for (const b of blocks) b.runs = 0;
    const ours = gradients();
    expect(blocks.map((b) => b.runs)).toEqual([4, 4]); // two gradients: each a forward and a recompute
    expect(tf.backend().numDataIds() - weights).toBe(3); // value, dGate and dx: no block weight left uploaded
    expect(await ours.value.data()).toEqual(await plain.value.data());
    await expectClose(ours.dGate, await plain.dGate.data(), 1e-6, 'dGate');
    await expectClose(ours.dx, await plain.dx.data(), 1e-6, 'dx');
    await expectNoLeak(gradients, 'checkpointed, offloaded gradients');

    offCheckpointing();
    offOffload();
    for (const b of blocks) b.runs = 0;
    tf.dispose(gradients());
    expect(blocks.map((b) => b.runs)).toEqual([2, 2]);
    tf.dispose([plain, ours, gate, x, y]);
    params.dispose();
  });

  it('refuses blocks of two models', async () => {
    const [one, two] = [model(), model()];
    expect(() => applyGradientCheckpointing([one.blocks[0], two.blocks[1]])).toThrow(
      "applyGradientCheckpointing: 'blocks.1' belongs to another model than 'blocks.0'",
    );
    await expect(applyGroupOffloading([], one.params)).rejects.toThrow('applyGroupOffloading: no blocks given');
    one.params.dispose();
    two.params.dispose();
  });
});
