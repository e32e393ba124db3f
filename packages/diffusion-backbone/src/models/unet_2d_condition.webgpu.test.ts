// Parity of the UNet with diffusers on the webgpu backend (Dawn; without a GPU, chromium's
// SwiftShader driver: see @png/core's setBackend). The cpu and wasm cases are in
// unet_2d_condition.test.ts; this is the subset SwiftShader runs in seconds.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ForwardContext, setBackend } from '@png/core';
import { FixtureIndex, expectClose, nchwToNhwc, sharedFixturesDir } from '@png/core/testing';
import { UNet2DConditionModel } from './unet_2d_condition';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const refs = new FixtureIndex(TINY);
const ATOL = 1e-4; // the fixture README's fp32 tolerance

function refTensor(key: string): tf.Tensor {
  const r = refs.read(key);
  if (r.shape.length !== 4) return tf.tensor(r.data, r.shape);
  const { data, shape } = nchwToNhwc(r.data as Float32Array, r.shape);
  return tf.tensor(data, shape);
}

describe('UNet2DConditionModel parity with diffusers on webgpu', () => {
  let unet: UNet2DConditionModel;
  let sample: tf.Tensor4D;
  let ehs: tf.Tensor3D;
  beforeAll(async () => {
    await setBackend('webgpu'); // no adapter: fails, saying which driver to install
    unet = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'));
    sample = refTensor('unet/sample') as tf.Tensor4D;
    ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
  });
  afterAll(() => {
    unet?.dispose();
    tf.dispose([sample, ehs]);
  });

  it.each([
    ['t1', 1],
    ['t500', 500],
  ])('matches the noise prediction at %s within 1e-4, without leaking', async (name, t) => {
    const remove = unet.addBlockHook('time_proj', { postForward: (p, out, ctx) => void (ctx.outputs[`${p}.out`] = out) });
    const before = tf.memory().numTensors;
    const { sample: out, outputs } = unet.forward(sample, t, ehs, { context: new ForwardContext() });
    expect(tf.memory().numTensors).toBe(before + 2); // only the results: the sample and the recorded time_proj
    remove();
    const expected = refTensor(`unet/${name}/out`);
    expect(out.shape).toEqual(expected.shape);
    const err = await expectClose(out, await expected.data(), ATOL, `webgpu unet/${name}/out`);
    const tpErr = await expectClose(outputs['time_proj.out'], refs.read(`unet/${name}/time_proj.out`).data, ATOL, `webgpu unet/${name}/time_proj.out`);
    console.log(`webgpu UNet ${name}: out max abs error ${err.toExponential(2)}; time_proj (host sin/cos: WGSL's are only good to 2⁻¹¹) ${tpErr.toExponential(2)}`);
    tf.dispose([expected, out, outputs]);
  });

  it('matches every block, resnet and attention reference at t500 within 1e-4', async () => {
    const remove = unet.addBlockHook(() => true, { postForward: (p, out, ctx) => void (ctx.outputs[`${p}.out`] = out) });
    const { sample: out, outputs } = unet.forward(sample, 500, ehs, { context: new ForwardContext() });
    remove();
    const keys = refs.keys('unet/t500/').filter((k) => !k.endsWith('out_fp16_weights') && !k.includes('.res_samples.'));
    expect(keys.length).toBeGreaterThan(30);
    let worst = 0;
    for (const key of keys) {
      const local = key.slice('unet/t500/'.length);
      const actual = local === 'out' ? out : outputs[local];
      if (!actual) throw new Error(`no output recorded for ${local}`);
      const expected = refTensor(key);
      expect(actual.shape).toEqual(expected.shape);
      worst = Math.max(worst, await expectClose(actual, await expected.data(), ATOL, `webgpu ${key}`));
      expected.dispose();
    }
    console.log(`webgpu UNet t500: ${keys.length} references, max abs error ${worst.toExponential(2)}`);
    tf.dispose([out, outputs]);
  });

  it.each([
    ['the batch-2 classifier-free-guidance case at t=999', 'fp32', 'b2_t999', 999, 'unet/b2_t999/out', ATOL],
    ['the fp16 variant at t=500', 'fp16', '', 500, 'unet/t500/out_fp16_weights', 3e-3],
  ])('matches %s', async (_, variant, inputs, t, key, atol) => {
    const model = variant === 'fp16' ? await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'), { variant: 'fp16' }) : unet;
    const x = refTensor(`unet/${inputs ? inputs + '/' : ''}sample`) as tf.Tensor4D;
    const context = refTensor(`unet/${inputs ? inputs + '/' : ''}encoder_hidden_states`) as tf.Tensor3D;
    const expected = refTensor(key as string); // NHWC
    const { sample: out } = model.forward(x, t as number, context);
    console.log(`webgpu ${key}: max abs error ${(await expectClose(out, await expected.data(), atol as number, `webgpu ${key}`)).toExponential(2)}`);
    tf.dispose([x, context, expected, out]);
    if (model !== unet) model.dispose();
  });
});
