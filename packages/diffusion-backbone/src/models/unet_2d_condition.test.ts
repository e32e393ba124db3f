import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ForwardContext, setBackend } from '@png/core';
import { FixtureIndex, expectClose, expectNoLeak, nchwToNhwc, sharedFixturesDir } from '@png/core/testing';
import { UNet2DConditionModel } from './unet_2d_condition';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const refs = new FixtureIndex(TINY);

/** A reference as an NHWC (4-D) or as-is (tokens, vectors) tensor. */
function refTensor(key: string): tf.Tensor {
  const r = refs.read(key);
  if (r.shape.length === 4) {
    const { data, shape } = nchwToNhwc(r.data as Float32Array, r.shape);
    return tf.tensor(data, shape);
  }
  return tf.tensor(r.data, r.shape);
}

/** Records every hooked module output into context.outputs under `<path>.out`. */
function recordAll(unet: UNet2DConditionModel): () => void {
  return unet.addBlockHook(() => true, {
    postForward: (p, out, ctx) => {
      ctx.outputs[`${p}.out`] = out;
    },
  });
}

/** The skip tensors each down block adds, rebuilt from its module outputs. */
function resSampleKeys(unet: UNet2DConditionModel): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  unet.down_blocks.forEach((b, i) => {
    const names = b.resnets.map((_, j) => (b.attentions[j] ? `attentions.${j}` : `resnets.${j}`));
    if (b.downsamplers.length) names.push('downsamplers.0');
    names.forEach((n, j) => pairs.push([`down_blocks.${i}.res_samples.${j}`, `down_blocks.${i}.${n}.out`]));
  });
  return pairs;
}

describe.each(['cpu', 'wasm'] as const)('UNet2DConditionModel parity with diffusers on %s', (backend) => {
  let unet: UNet2DConditionModel;
  beforeAll(async () => {
    await setBackend(backend);
    unet = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'));
  });
  afterAll(() => unet.dispose());

  it.each([
    ['t1', 1],
    ['t500', 500],
  ])('matches every reference tensor at %s', async (name, t) => {
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    const remove = recordAll(unet);
    const { sample: out, outputs } = unet.forward(sample, t, ehs, { context: new ForwardContext() });
    remove();
    const keys = refs.keys(`unet/${name}/`).filter((k) => !k.endsWith('out_fp16_weights'));
    expect(keys.length).toBeGreaterThan(10);
    const resMap = new Map(resSampleKeys(unet));
    for (const key of keys) {
      const local = key.slice(`unet/${name}/`.length);
      const actual = local === 'out' ? out : outputs[resMap.get(local) ?? local];
      if (!actual) throw new Error(`no output recorded for ${local}`);
      const expected = refTensor(key);
      expect(actual.shape).toEqual(expected.shape);
      await expectClose(actual, await expected.data(), 1e-4, key);
      expected.dispose();
    }
    tf.dispose([sample, ehs, out, outputs]);
  });

  it('matches the batch-2 classifier-free-guidance case at t=999', async () => {
    const sample = refTensor('unet/b2_t999/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/b2_t999/encoder_hidden_states') as tf.Tensor3D;
    const expected = refTensor('unet/b2_t999/out');
    const { sample: out } = unet.forward(sample, 999, ehs);
    await expectClose(out, await expected.data(), 1e-4, 'unet/b2_t999/out');
    tf.dispose([sample, ehs, out, expected]);
  });

  it('loads the fp16 variant within the fp16 tolerance', async () => {
    const half = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'), { variant: 'fp16' });
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    const expected = refTensor('unet/t500/out_fp16_weights');
    const { sample: out } = half.forward(sample, 500, ehs);
    await expectClose(out, await expected.data(), 3e-3, 'unet/t500/out_fp16_weights');
    tf.dispose([sample, ehs, out, expected]);
    half.dispose();
  });

  it('does not leak tensors, with or without hooks', async () => {
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    await expectNoLeak(() => unet.forward(sample, 10, ehs), 'UNet2DConditionModel.forward');
    const remove = recordAll(unet);
    await expectNoLeak(() => unet.forward(sample, [10], ehs), 'UNet2DConditionModel.forward with hooks');
    remove();
    tf.dispose([sample, ehs]);
  });
});
