import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ForwardContext, contextKey, setBackend } from '@png/core';
import { expectClose, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { UNet2DConditionModel } from './unet_2d_condition';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const TINY_CONFIG = JSON.parse(fs.readFileSync(path.join(TINY, 'unet', 'config.json'), 'utf8'));

/** Gradients agree to float rounding: within 1e-5 of the largest reference entry. */
async function expectGradClose(actual: tf.Tensor, expected: tf.Tensor, label: string): Promise<void> {
  const ref = await expected.data();
  let scale = 0;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  expect(scale).toBeGreaterThan(0);
  await expectClose(actual, ref, 1e-5 * scale, label);
}

/** Σ x · (a fixed pattern), so every output element gets a different gradient. */
const weighted = (x: tf.Tensor): tf.Scalar => tf.sum(tf.mul(x, tf.reshape(tf.sin(tf.range(0, x.size)), x.shape)));

/** Live backend buffers added while `f` runs inside a gradient tape (what the tape keeps for the backward). */
function buffersKeptForGradient(f: () => tf.Scalar, vars: tf.Variable[]): number {
  let added = 0;
  const { value, grads } = tf.variableGrads(() => {
    const before = tf.memory().numDataBuffers;
    const y = f();
    added = tf.memory().numDataBuffers - before;
    return y;
  }, vars);
  tf.dispose([value, grads]);
  return added;
}

describe.each(['cpu', 'wasm'] as const)('UNet2DConditionModel gradient checkpointing on %s', (backend) => {
  let sample: tf.Tensor4D, ehs: tf.Tensor3D, mask: tf.Tensor2D;
  beforeAll(async () => {
    await setBackend(backend);
    sample = tf.randomNormal([2, 8, 8, 4], 0, 1, 'float32', 1);
    ehs = tf.randomNormal([2, 5, 32], 0, 1, 'float32', 2);
    mask = tf.tensor2d([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], [2, 5]);
  });
  afterAll(() => tf.dispose([sample, ehs, mask]));

  it('a trainable UNet: bit-identical outputs, equal gradients for every weight, far less kept for the gradient, no leak', async () => {
    const unet = UNet2DConditionModel.create(TINY_CONFIG, { seed: 3, trainable: true });
    const vars = unet.trainableVariables();
    const run = () => unet.forward(sample, [10, 500], ehs, { encoderAttentionMask: mask }).sample;
    const loss = () => weighted(run());

    const plainOut = run();
    const plain = tf.variableGrads(loss, vars);
    const plainKept = buffersKeptForGradient(loss, vars);
    const disable = unet.enableGradientCheckpointing();
    const ours = run();
    expect(await ours.data()).toEqual(await plainOut.data());
    const checkpointed = tf.variableGrads(loss, vars);
    expect(await checkpointed.value.data()).toEqual(await plain.value.data());
    expect(Object.keys(checkpointed.grads).sort()).toEqual(Object.keys(plain.grads).sort());
    for (const name of Object.keys(plain.grads)) await expectGradClose(checkpointed.grads[name], plain.grads[name], name);
    expect(buffersKeptForGradient(loss, vars)).toBeLessThan(plainKept / 4);
    await expectNoLeak(() => tf.variableGrads(loss, vars), 'checkpointed UNet gradients');
    await expectNoLeak(run, 'checkpointed UNet forward');
    disable();
    tf.dispose([plainOut, ours, plain, checkpointed]);
    unet.dispose();
  }, 600_000);

  describe('a frozen UNet read through hooks that carry state in the context (as EIPA and feature taps do)', () => {
    let unet: UNet2DConditionModel;
    let gate: tf.Variable;
    let removeHooks: Array<() => void>;
    const STATE = contextKey<tf.Tensor>('test/state');
    beforeAll(async () => {
      unet = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'));
      gate = tf.variable(tf.fill([4], 0.5), true, `gate_${backend}`);
      removeHooks = [
        // every transformer block updates the state [B, 4] from its tokens and feeds it back into them
        ...unet.transformerBlocks().map(({ path: p }) =>
          unet.addBlockHook(p, {
            postForward: (_, tokens, ctx) => {
              const state = tf.tanh(tf.add(ctx.require(STATE), tf.mul(tf.reshape(tf.mean(tokens, [1, 2]), [-1, 1]), gate))); // [B, 4]
              ctx.set(STATE, state);
              return tf.add(tokens, tf.mul(tf.reshape(tf.mean(state, 1), [-1, 1, 1]), 0.1)); // [B, N, C] + [B, 1, 1]
            },
          }),
        ),
        // every up block records its output and the state so far
        unet.addBlockHook(/^up_blocks\.\d+$/, {
          postForward: (level, out, ctx) => {
            ctx.outputs[`features/${level}`] = out;
            ctx.outputs[`state/${level}`] = ctx.require(STATE);
          },
        }),
      ];
    });
    afterAll(() => {
      removeHooks.forEach((r) => r());
      gate.dispose();
      unet.dispose();
    });

    /** Loss over the sample and every recorded output; `initial` is the state the forward starts from. */
    const loss = (initial: tf.Tensor, context = new ForwardContext().set(STATE, initial)): tf.Scalar => {
      const { sample: out, outputs } = unet.forward(sample, 1, ehs, { encoderAttentionMask: mask, context });
      return tf.addN([weighted(out), ...Object.keys(outputs).sort().map((k) => weighted(outputs[k]))]) as tf.Scalar;
    };
    const gradients = (initial: tf.Tensor) => {
      const { value, grads } = tf.variableGrads(() => loss(initial), [gate]);
      const [dInitial] = tf.grads((s: tf.Tensor) => loss(s))([initial]);
      return { value, dGate: grads[gate.name], dInitial };
    };

    it('gives bit-identical outputs and equal gradients through the state and the outputs, with and without sequential offload', async () => {
      const initial = tf.randomNormal([2, 4], 0, 1, 'float32', 5);
      const plainContext = new ForwardContext().set(STATE, initial);
      const plainOut = unet.forward(sample, 1, ehs, { encoderAttentionMask: mask, context: plainContext });
      expect(Object.keys(plainOut.outputs).sort()).toEqual(['features/up_blocks.0', 'features/up_blocks.1', 'features/up_blocks.2', 'state/up_blocks.0', 'state/up_blocks.1', 'state/up_blocks.2']);
      const plain = gradients(initial);

      const disable = unet.enableGradientCheckpointing({ variables: [gate] });
      for (const offload of [false, true]) {
        const disableOffload = offload ? await unet.enableSequentialOffload() : undefined;
        const context = new ForwardContext().set(STATE, initial);
        const ours = unet.forward(sample, 1, ehs, { encoderAttentionMask: mask, context });
        expect(await ours.sample.data()).toEqual(await plainOut.sample.data());
        for (const k of Object.keys(plainOut.outputs)) expect(await ours.outputs[k].data()).toEqual(await plainOut.outputs[k].data());
        expect(context.get(STATE)).toBe(ours.outputs['state/up_blocks.2']); // the block's outputs land in the context, one tensor as without checkpointing
        const checkpointed = gradients(initial);
        expect(await checkpointed.value.data()).toEqual(await plain.value.data());
        await expectGradClose(checkpointed.dGate, plain.dGate, `gate (offload: ${offload})`);
        await expectGradClose(checkpointed.dInitial, plain.dInitial, `initial state (offload: ${offload})`);
        await expectNoLeak(() => gradients(initial), `checkpointed gradients (offload: ${offload})`);
        tf.dispose([ours, checkpointed]);
        disableOffload?.();
      }
      disable();
      tf.dispose([initial, plainOut, plain]);
    }, 600_000);

    it('leaves the context of a forward as the forward left it, after the gradient ran the blocks again', () => {
      const disable = unet.enableGradientCheckpointing({ variables: [gate] });
      const initial = tf.randomNormal([2, 4], 0, 1, 'float32', 6);
      const context = new ForwardContext().set(STATE, initial);
      let after: { state: unknown; outputs: Record<string, tf.Tensor> } | undefined;
      const { value, grads } = tf.variableGrads(() => {
        const y = loss(initial, context);
        after = { state: context.get(STATE), outputs: { ...context.outputs } };
        return y;
      }, [gate]);
      expect(context.get(STATE)).toBe(after!.state);
      expect(context.outputs).toEqual(after!.outputs);
      tf.dispose([value, grads, initial]);
      disable();
    });

    it('names the block whose hooks write other context entries when it runs again', () => {
      const disable = unet.enableGradientCheckpointing({ variables: [gate] });
      let runs = 0;
      const remove = unet.addBlockHook('mid_block', {
        postForward: (_, out, ctx) => {
          if (runs++ === 0) ctx.outputs.once = out;
        },
      });
      const initial = tf.zeros([2, 4]);
      expect(() => tf.variableGrads(() => loss(initial), [gate])).toThrow("gradient checkpointing: run again for its gradient, 'mid_block' did not write outputs['once'] as in the forward");
      remove();
      disable();
      initial.dispose();
    });
  });
});
