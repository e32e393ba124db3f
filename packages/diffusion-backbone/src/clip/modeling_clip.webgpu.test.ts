// Parity of the CLIP text encoder with transformers on the webgpu backend (Dawn; without a GPU,
// chromium's SwiftShader driver: see @png/core's setBackend). The cpu and wasm cases are in
// modeling_clip.test.ts.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { FixtureIndex, expectClose, sharedFixturesDir } from '@png/core/testing';
import { CLIPTextModel } from './modeling_clip';

const fx = new FixtureIndex(path.join(sharedFixturesDir(), 'tiny-sd'));
const CAPTIONS = fx
  .keys('text/')
  .filter((k) => k.endsWith('.input_ids'))
  .map((k) => k.slice('text/'.length, -'.input_ids'.length));
const ATOL = 1e-4; // the fixture README's fp32 tolerance

function ids(name: string): tf.Tensor2D {
  const ref = fx.read(`text/${name}.input_ids`);
  return tf.tensor2d(ref.data as Int32Array, ref.shape as [number, number], 'int32');
}

describe('CLIPTextModel parity with transformers on webgpu', () => {
  let model: CLIPTextModel;
  beforeAll(async () => {
    await setBackend('webgpu'); // no adapter: fails, saying which driver to install
    model = await CLIPTextModel.fromPretrained(path.join(fx.dir, 'text_encoder'));
  });
  afterAll(() => model?.dispose());

  it('matches last_hidden_state of every caption, as one batch, without leaking', async () => {
    expect(CAPTIONS).toHaveLength(4);
    const input = tf.concat(CAPTIONS.map(ids)) as tf.Tensor2D; // [4, 77]
    const before = tf.memory().numTensors;
    const out = model.forward(input);
    expect(tf.memory().numTensors).toBe(before + 2); // only lastHiddenState and poolerOutput
    const rows = tf.split(out.lastHiddenState, CAPTIONS.length);
    let worst = 0;
    for (const [i, name] of CAPTIONS.entries()) {
      worst = Math.max(worst, await expectClose(rows[i], fx.read(`text/${name}.last_hidden_state`).data, ATOL, `webgpu ${name}.last_hidden_state`));
    }
    console.log(`webgpu CLIP text encoder: ${CAPTIONS.length} captions, last_hidden_state max abs error ${worst.toExponential(2)}`);
    tf.dispose([input, out, rows]);
  });

  // webgpu's argMax returns any of tied maxima (index 64 of the 77 <|endoftext|> paddings here);
  // the pooling ranks ties by position, so it picks the first, as torch does.
  it('matches pooler_output (the first <|endoftext|>, though webgpu argMax breaks ties elsewhere)', async () => {
    const input = tf.concat(CAPTIONS.map(ids)) as tf.Tensor2D;
    const out = model.forward(input);
    const pooled = tf.split(out.poolerOutput, CAPTIONS.length);
    try {
      for (const [i, name] of CAPTIONS.entries())
        await expectClose(pooled[i], fx.read(`text/${name}.pooler_output`).data, ATOL, `webgpu ${name}.pooler_output`);
    } finally {
      tf.dispose([input, out, pooled]);
    }
  });
});
