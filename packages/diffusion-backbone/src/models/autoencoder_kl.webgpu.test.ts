// Parity of the VAE with diffusers on the webgpu backend (Dawn; without a GPU, chromium's
// SwiftShader driver: see @png/core's setBackend). The cpu and wasm cases, the decoder's too, are in
// autoencoder_kl.test.ts; SwiftShader is slow, so this checks the encoder, the part PNG uses.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { FixtureIndex, expectClose, nchwToNhwc, sharedFixturesDir } from '@png/core/testing';
import { AutoencoderKL } from './autoencoder_kl';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const refs = new FixtureIndex(TINY);
const ATOL = 1e-4; // the fixture README's fp32 tolerance

function refNhwc(key: string): tf.Tensor4D {
  const r = refs.read(key);
  const { data, shape } = nchwToNhwc(r.data as Float32Array, r.shape);
  return tf.tensor4d(data, shape as [number, number, number, number]);
}

describe('AutoencoderKL parity with diffusers on webgpu', () => {
  let vae: AutoencoderKL;
  let image: tf.Tensor4D;
  beforeAll(async () => {
    await setBackend('webgpu'); // no adapter: fails, saying which driver to install
    vae = await AutoencoderKL.fromPretrained(path.join(TINY, 'vae'));
    image = refNhwc('vae/image');
  });
  afterAll(() => {
    vae?.dispose();
    tf.dispose(image);
  });

  it('encodes the image to the latent distribution and scaled latents of diffusers, without leaking', async () => {
    const { mean, logvar, std, outputs } = vae.encode(image);
    const before = tf.memory().numTensors;
    const scaled = vae.latents(image);
    expect(tf.memory().numTensors).toBe(before + 1); // only the result is left
    const actual: Record<string, tf.Tensor> = {
      'vae/latent_dist.mean': mean,
      'vae/latent_dist.logvar': logvar,
      'vae/latent_dist.std': std,
      'vae/latents_scaled': scaled,
    };
    const errors: string[] = [];
    for (const [key, t] of Object.entries(actual)) {
      const expected = refNhwc(key);
      expect(t.shape).toEqual(expected.shape);
      errors.push(`${key.slice(4)} ${(await expectClose(t, await expected.data(), ATOL, `webgpu ${key}`)).toExponential(2)}`);
      expected.dispose();
    }
    console.log(`webgpu VAE max abs errors: ${errors.join(', ')}`);
    tf.dispose([mean, logvar, std, outputs, scaled]);
  });
});
