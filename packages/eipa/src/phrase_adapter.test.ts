import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type PhraseFeatures } from '@png/core';
import { expectClose, expectDefined, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { FeatureTaps, UNet2DConditionModel, type AttentionProcessor } from '@png/diffusion-backbone';
import { PhraseAdapter, attachEipa, type EipaAttachment } from './phrase_adapter';

const TINY_UNET = path.join(sharedFixturesDir(), 'tiny-sd', 'unet');

/** Two narratives, three phrase slots, the second narrative with one padding slot. */
function inputs(): { latents: tf.Tensor4D; phrases: PhraseFeatures } {
  return {
    latents: tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 11) as tf.Tensor4D,
    phrases: {
      tensor: tf.randomNormal([2, 3, 32], 0, 1, 'float32', 12) as tf.Tensor3D,
      mask: tf.tensor2d([
        [1, 1, 1],
        [1, 1, 0],
      ]),
    },
  };
}

describe('EIPA on the tiny SD UNet (wasm)', () => {
  let unet: UNet2DConditionModel;
  let taps: FeatureTaps;
  beforeAll(async () => {
    await setBackend('wasm');
    unet = await UNet2DConditionModel.fromPretrained(TINY_UNET);
    taps = new FeatureTaps(unet);
  });
  afterAll(() => {
    taps.remove();
    unet.dispose();
  });

  /** The sample and the tapped levels of a forward as flat arrays, for bit-for-bit comparisons. */
  async function snapshot(out: { sample: tf.Tensor; outputs: Record<string, tf.Tensor> }): Promise<Float32Array[]> {
    return Promise.all([out.sample, ...taps.pyramid(out.outputs).map((level) => level.tensor)].map(async (t) => (await t.data()) as Float32Array));
  }

  /** The static-prompting baseline: the plain UNet with the phrases as its cross-attention context. */
  async function staticForward(x: ReturnType<typeof inputs>): Promise<Float32Array[]> {
    const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask });
    const snap = await snapshot(out);
    tf.dispose(out);
    return snap;
  }

  async function adaptedForward(eipa: EipaAttachment, x: ReturnType<typeof inputs>): Promise<Float32Array[]> {
    const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
    const snap = await snapshot(out);
    tf.dispose(out);
    return snap;
  }

  it('adapts every cross-attention transformer block by default', () => {
    const adapter = PhraseAdapter.create(unet);
    expect(adapter.blocks.map((b) => b.path)).toEqual(unet.transformerBlocks().map((b) => b.path));
    expect(adapter.blocks).toHaveLength(7);
    expect(adapter.parameters.keys()).toContain('down_blocks.0.attentions.0.transformer_blocks.0.inject.gate');
    adapter.dispose();
  });

  it.each([
    ['every switch off', { extract: false, inject: false, dynamic_prompt: false }],
    ['inject on, gate at its initial 0', { extract: false, inject: true, dynamic_prompt: false }],
    ['extract + inject + dynamic prompt, gates at 0', {}],
    [
      'per-channel gates at 0, extract with self-attention + FFN, GLIGEN inject after self-attention',
      { extract_gate: 'per_channel', inject_gate: 'per_channel', extract_self_attention: true, extract_ffn_dim: 16, inject_position: 'after_self_attention' },
    ],
    ['sine positions, gates at 0', { position_encoding: 'sine' }],
  ] as const)('%s: the UNet stream equals the static-prompted UNet bit for bit', async (_name, config) => {
    const x = inputs();
    const expected = await staticForward(x);
    const adapter = PhraseAdapter.create(unet, config, { seed: 1 });
    const eipa = attachEipa(unet, adapter);
    const actual = await adaptedForward(eipa, x);
    eipa.detach();
    for (const [i, a] of actual.entries()) expect(Buffer.from(a.buffer).equals(Buffer.from(expected[i].buffer))).toBe(true);
    tf.dispose(x);
    adapter.dispose();
  });

  it('changes the stream once the gates open, and detach() restores the UNet exactly', async () => {
    const x = inputs();
    const before = await staticForward(x);
    const processors = unet.attnProcessors();
    const adapter = PhraseAdapter.create(unet, { gate_init: 0.5 }, { seed: 2 });
    const eipa = attachEipa(unet, adapter);
    expect(() => attachEipa(unet, adapter)).toThrow(/already has an EIPA adapter attached/);
    const adapted = await adaptedForward(eipa, x);
    expect(Math.max(...adapted[0].map((v, i) => Math.abs(v - before[0][i])))).toBeGreaterThan(1e-3);
    eipa.detach();
    expect(unet.attnProcessors()).toEqual(processors);
    const again = attachEipa(unet, adapter);
    eipa.detach(); // a second detach does nothing: the new attachment stays
    expect(() => attachEipa(unet, adapter)).toThrow(/already has an EIPA adapter attached/);
    again.detach();
    const after = await staticForward(x);
    for (const [i, a] of after.entries()) expect(Buffer.from(a.buffer).equals(Buffer.from(before[i].buffer))).toBe(true);
    tf.dispose(x);
    adapter.dispose();
  });

  it.each(['after_block', 'after_self_attention'] as const)(
    'sine positions (inject %s): same weights, another stream and other phrase states; a non-square grid needs latentSize',
    async (injectPosition) => {
      const x = inputs();
      const run = async (config: Record<string, unknown>, latents: tf.Tensor4D, latentSize?: readonly [number, number]) => {
        const adapter = PhraseAdapter.create(unet, { gate_init: 0.5, inject_position: injectPosition, ...config }, { seed: 7 });
        const eipa = attachEipa(unet, adapter, { levels: taps.levels });
        try {
          const out = unet.forward(latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases, { latentSize }) });
          const result = [await out.sample.data(), ...(await Promise.all(eipa.phraseStates(out.outputs, x.phrases).map((st) => st.tensor.data())))];
          tf.dispose(out);
          return result;
        } finally {
          eipa.detach();
          adapter.dispose();
        }
      };
      const contentOnly = await run({}, x.latents);
      const placed = await run({ position_encoding: 'sine' }, x.latents);
      for (const [i, a] of placed.entries()) expect(Math.max(...a.map((v, j) => Math.abs(v - contentOnly[i][j])))).toBeGreaterThan(1e-4);
      const wide = tf.randomNormal([2, 16, 8, 4], 0, 1, 'float32', 13) as tf.Tensor4D; // 128 latent tokens: not square
      await expect(run({ position_encoding: 'sine' }, wide)).rejects.toThrow(/has 128 image tokens, not a square grid; pass the latent size/);
      const withSize = await run({ position_encoding: 'sine' }, wide, [16, 8]); // grids 16×8, 8×4, 4×2
      expect(withSize[0]).toHaveLength(2 * 16 * 8 * 4);
      expect(withSize.every((a) => a.every(Number.isFinite))).toBe(true);
      await expect(run({ position_encoding: 'sine' }, wide, [8, 8])).rejects.toThrow(/has 128 image tokens, which no halving of the latent grid \[8,8\] gives/);
      tf.dispose([x, wide]);
    },
  );

  it('hands back the phrase state after each tapped level and the inject attention maps', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { gate_init: 0.5 }, { seed: 3 });
    const eipa = attachEipa(unet, adapter, { levels: taps.levels, recordAttention: true });
    expect(eipa.levels).toEqual(['up_blocks.0', 'up_blocks.1', 'up_blocks.2']);
    const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
    const states = eipa.phraseStates(out.outputs, x.phrases);
    expect(states.map((s) => s.tensor.shape)).toEqual(taps.pyramid(out.outputs).map(() => [2, 3, 32]));
    expect(states.every((s) => s.mask === x.phrases.mask)).toBe(true);
    // every up block extracts, so each level's state differs from the one before
    for (let i = 1; i < states.length; i++)
      expect(Buffer.from((await states[i].tensor.data()).buffer).equals(Buffer.from((await states[i - 1].tensor.data()).buffer))).toBe(false);
    const attention = eipa.attention(out.outputs);
    expect(Object.keys(attention)).toEqual(adapter.blocks.map((b) => b.path));
    const att = attention['up_blocks.2.attentions.1.transformer_blocks.0'];
    expect(att.shape).toEqual([2, 16 * 16, 3]);
    const padded = await tf.slice(att, [1, 0, 2], [1, -1, 1]).data(); // the second narrative's padding slot
    expect(Math.max(...padded)).toBe(0);
    tf.dispose([x, out]);
    eipa.detach();
    adapter.dispose();
  });

  it('records only the levels it is given; without extract every state is the initial phrases', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { extract: false, gate_init: 0.5 }, { seed: 3 });
    expect(() => attachEipa(unet, adapter, { levels: ['up_blocks.7'] })).toThrow(
      "attachEipa: level 'up_blocks.7' is not an up block of this UNet (up_blocks.0, up_blocks.1, up_blocks.2)",
    );
    const eipa = attachEipa(unet, adapter, { levels: ['up_blocks.2', 'up_blocks.0'] });
    const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
    const states = eipa.phraseStates(out.outputs, x.phrases);
    expect(states).toHaveLength(2);
    for (const s of states) expect(await s.tensor.data()).toEqual(await x.phrases.tensor.data());
    expect(eipa.attention(out.outputs)).toEqual({});
    eipa.detach();
    const plain = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask });
    expect(() => eipa.phraseStates(plain.outputs, x.phrases)).toThrow("EipaAttachment: no phrase state of 'up_blocks.2' in these outputs");
    tf.dispose([x, out, plain]);
    adapter.dispose();
  });

  it('gets gradients through the frozen UNet down to the first down block, leaves the UNet untouched, and does not leak', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { gate_init: 0.5 }, { seed: 4 });
    const eipa = attachEipa(unet, adapter);
    const frozen = await Promise.all(unet.parameters.keys().map(async (k) => [k, await unet.parameters.get(k).data()] as const));
    const target = tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 5);
    const loss = () =>
      tf.tidy(() => {
        const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
        return tf.mean(tf.square(tf.sub(out.sample, target))) as tf.Scalar;
      });
    const { grads, value } = tf.variableGrads(loss, adapter.trainableVariables());
    expect(Object.keys(grads).sort()).toEqual(
      adapter
        .trainableVariables()
        .map((v) => v.name)
        .sort(),
    );
    for (const key of adapter.parameters.keys().filter((k) => k.startsWith('down_blocks.0.'))) {
      const g = grads[(adapter.parameters.get(key) as tf.Variable).name];
      expect(g).toBeDefined();
      expect((await tf.max(tf.abs(g)).data())[0]).toBeGreaterThan(0);
    }
    tf.dispose([value, grads]);
    const optimizer = tf.train.adam(1e-3);
    const live = tf.memory().numTensors;
    for (let step = 0; step < 2; step++) tf.dispose(optimizer.minimize(loss, true, adapter.trainableVariables()) ?? []);
    const afterSteps = tf.memory().numTensors;
    for (let step = 0; step < 2; step++) tf.dispose(optimizer.minimize(loss, true, adapter.trainableVariables()) ?? []);
    expect(tf.memory().numTensors).toBe(afterSteps); // the optimizer's slots are made on the first steps only
    expect(afterSteps).toBeGreaterThanOrEqual(live);
    for (const [k, data] of frozen) expect(Buffer.from((await unet.parameters.get(k).data()).buffer).equals(Buffer.from(data.buffer))).toBe(true);
    optimizer.dispose();
    tf.dispose([x, target]);
    eipa.detach();
    adapter.dispose();
  });

  it('passes a finite-difference gradient check', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(
      unet,
      {
        gate_init: 0.3,
        bottleneck_dim: 8,
        num_heads: 2,
        block_paths: ['down_blocks.1.attentions.0.transformer_blocks.0', 'up_blocks.1.attentions.0.transformer_blocks.0'],
      },
      { seed: 6 },
    );
    const eipa = attachEipa(unet, adapter);
    const weights = tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 7);
    const f = () =>
      tf.tidy(() => {
        const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
        return tf.mean(tf.mul(out.sample, weights)) as tf.Scalar;
      });
    const checked = [
      'down_blocks.1.attentions.0.transformer_blocks.0.extract.to_v.weight',
      'down_blocks.1.attentions.0.transformer_blocks.0.inject.gate',
      'up_blocks.1.attentions.0.transformer_blocks.0.inject.to_out.weight',
      'up_blocks.1.attentions.0.transformer_blocks.0.extract.norm_q.weight',
    ];
    const { grads, value } = tf.variableGrads(
      f,
      checked.map((k) => adapter.parameters.get(k) as tf.Variable),
    );
    for (const key of checked) {
      const v = adapter.parameters.get(key) as tf.Variable;
      const analytic = (await grads[v.name].data())[0];
      const original = await v.data();
      const at = async (delta: number) => {
        const shifted = Float32Array.from(original);
        shifted[0] += delta;
        v.assign(tf.tensor(shifted, v.shape));
        const y = f();
        const r = (await y.data())[0];
        y.dispose();
        return r;
      };
      const eps = 1e-2;
      const numeric = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      v.assign(tf.tensor(original, v.shape));
      expect(Math.abs(analytic - numeric)).toBeLessThanOrEqual(2e-2 * Math.abs(numeric) + 2e-5);
    }
    tf.dispose([value, grads, weights, x]);
    eipa.detach();
    adapter.dispose();
  });

  it('with caption tokens, dynamic prompting replaces only the phrase slots after them', async () => {
    const x = inputs();
    const caption = {
      tensor: tf.randomNormal([2, 5, 32], 0, 1, 'float32', 13) as tf.Tensor3D,
      mask: tf.tensor2d([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
      ]),
      spans: tf.zeros([2, 3, 2]) as tf.Tensor3D, // EIPA reads no span
    };
    const prompt = {
      tensor: tf.concat([caption.tensor, x.phrases.tensor], 1) as tf.Tensor3D,
      mask: tf.concat([caption.mask, x.phrases.mask], 1) as tf.Tensor2D,
    }; // [2, 8, 32], [2, 8]
    const run = (context?: ReturnType<EipaAttachment['context']>) =>
      snapshot(unet.forward(x.latents, 1, prompt.tensor, { encoderAttentionMask: prompt.mask, context }));
    // gates at 0: the same stream as the static UNet on [caption; phrases]
    const expected = await run();
    const closed = PhraseAdapter.create(unet, {}, { seed: 1 });
    let eipa = attachEipa(unet, closed);
    const actual = await run(eipa.context(x.phrases, { caption }));
    eipa.detach();
    for (const [i, a] of actual.entries()) expect(Buffer.from(a.buffer).equals(Buffer.from(expected[i].buffer))).toBe(true);
    // gates open: every cross-attention reads the caption unchanged, then the current phrase state
    const reads: Array<{ caption: number; phrases: number; mask: number }> = [];
    const previous = unet.attnProcessors();
    const recording = Object.fromEntries(
      Object.entries(previous).map(([key, inner]) => [
        key,
        key.endsWith('.attn2.processor')
          ? (((attn, hidden, args) => {
              const ehs = expectDefined(args.encoderHiddenStates, 'encoderHiddenStates'); // attn2: the prompt
              const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
              reads.push({
                caption: diff(tf.slice(ehs, [0, 0, 0], [-1, 5, -1]), caption.tensor),
                phrases: diff(tf.slice(ehs, [0, 5, 0], [-1, 3, -1]), x.phrases.tensor),
                mask: diff(expectDefined(args.encoderAttentionMask, 'encoderAttentionMask'), prompt.mask),
              });
              return inner(attn, hidden, args);
            }) as AttentionProcessor)
          : inner,
      ]),
    );
    unet.setAttnProcessor(recording);
    const open = PhraseAdapter.create(unet, { gate_init: 0.5 }, { seed: 2 });
    eipa = attachEipa(unet, open);
    tf.dispose(unet.forward(x.latents, 1, prompt.tensor, { encoderAttentionMask: prompt.mask, context: eipa.context(x.phrases, { caption }) }));
    eipa.detach();
    unet.setAttnProcessor(previous);
    expect(reads).toHaveLength(open.blocks.length);
    expect(reads.every((r) => r.caption === 0 && r.mask === 0)).toBe(true);
    expect(reads[0].phrases).toBe(0); // the first block reads the initial phrases
    expect(reads[reads.length - 1].phrases).toBeGreaterThan(1e-3); // later blocks read extracted states
    // caption tokens that do not fit the phrases are an error naming both shapes
    eipa = attachEipa(unet, open);
    const narrow = { tensor: tf.zeros([2, 5, 16]) as tf.Tensor3D, mask: tf.ones([2, 5]) as tf.Tensor2D, spans: tf.zeros([2, 3, 2]) as tf.Tensor3D };
    expect(() => eipa.context(x.phrases, { caption: narrow })).toThrow(
      'PhraseAdapter: caption tokens [2,5,16] with mask [2,5] do not match the phrases [2,3,32]; expected [2, T, 32] and [2, T]',
    );
    eipa.detach();
    tf.dispose([x, caption, prompt, narrow]);
    closed.dispose();
    open.dispose();
  });

  it('saves and loads bit for bit; a checkpoint of another config is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eipa-'));
    const adapter = PhraseAdapter.create(unet, { gate_init: 0.2 }, { seed: 8 });
    await adapter.save(dir);
    const loaded = await PhraseAdapter.fromPretrained(dir, unet);
    expect(loaded.config).toEqual(adapter.config);
    for (const k of adapter.parameters.keys()) await expectClose(loaded.parameters.get(k), await adapter.parameters.get(k).data(), 0, k);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, bottleneck_dim: 16 }));
    await expect(PhraseAdapter.fromPretrained(dir, unet)).rejects.toThrow(
      /'down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.extract\.to_q\.weight' has shape \[64,32\], expected \[16,32\]/,
    );
    adapter.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('rejects bad configs and phrases before allocating anything', () => {
    const before = tf.memory().numTensors;
    expect(() => PhraseAdapter.create(unet, { num_heads: 7 })).toThrow('Error in EipaConfig.num_heads: expected a divisor of bottleneck_dim (64), got 7');
    expect(() => PhraseAdapter.create(unet, { num_head: 8 } as never)).toThrow(/EipaConfig\.num_head: expected a known field \(did you mean 'num_heads'\?\)/);
    expect(() => PhraseAdapter.create(unet, { block_paths: ['down_blocks.9.attentions.0.transformer_blocks.0'] })).toThrow(
      /'down_blocks\.9\.attentions\.0\.transformer_blocks\.0' is not a transformer block of this UNet/,
    );
    expect(() => PhraseAdapter.create(unet, { extract_gate: 'vector' } as never)).toThrow(
      `Error in EipaConfig.extract_gate: expected one of 'scalar', 'per_channel', 'none', got "vector"`,
    );
    expect(() => PhraseAdapter.create(unet, { inject_gate: true } as never)).toThrow('Error in EipaConfig.inject_gate: expected a string, got true');
    expect(() => PhraseAdapter.create(unet, { extract_ffn_dim: 2.5 })).toThrow(
      'Error in EipaConfig.extract_ffn_dim: expected an integer ≥ 0 (0: no FFN), got 2.5',
    );
    expect(() => PhraseAdapter.create(unet, { inject_position: 'before_block' } as never)).toThrow(
      `Error in EipaConfig.inject_position: expected one of 'after_block', 'after_self_attention', got "before_block"`,
    );
    expect(() => PhraseAdapter.create(unet, { position_encoding: 'learned' } as never)).toThrow(
      `Error in EipaConfig.position_encoding: expected one of 'none', 'sine', got "learned"`,
    );
    expect(tf.memory().numTensors).toBe(before);
    const adapter = PhraseAdapter.create(unet);
    const eipa = attachEipa(unet, adapter);
    const wrong = { tensor: tf.zeros([1, 2, 16]) as tf.Tensor3D, mask: tf.ones([1, 2]) as tf.Tensor2D };
    expect(() => eipa.context(wrong)).toThrow(/phrase features are \[1,2,16\], expected width 32/);
    const misaligned = { tensor: tf.zeros([1, 2, 32]) as tf.Tensor3D, mask: tf.ones([1, 3]) as tf.Tensor2D };
    expect(() => eipa.context(misaligned)).toThrow('PhraseAdapter: phrase mask [1,3] does not match the phrases [1, 2]');
    tf.dispose([wrong, misaligned]);
    eipa.detach();
    adapter.dispose();
  });

  /** Every new option open: ungated extract with self-attention + FFN, per-channel GLIGEN inject after self-attention. */
  const OPEN = {
    extract_gate: 'none',
    extract_self_attention: true,
    extract_ffn_dim: 16,
    inject_gate: 'per_channel',
    inject_position: 'after_self_attention',
    gate_init: 0.5,
  } as const;

  it('an ungated extract moves the phrase state and the stream from the start; the zero-gates probe makes it static prompting bit for bit', async () => {
    const x = inputs();
    const expected = await staticForward(x);
    const adapter = PhraseAdapter.create(unet, { ...OPEN, inject: false, gate_init: 0 }, { seed: 9 });
    expect(await adapter.gateMagnitudes()).toEqual({ extract: null, inject: null });
    const eipa = attachEipa(unet, adapter);
    const moved = await adaptedForward(eipa, x);
    expect(Math.max(...moved[0].map((v, i) => Math.abs(v - expected[0][i])))).toBeGreaterThan(1e-4);
    eipa.detach();
    adapter.dispose();
    for (const config of [OPEN, { gate_init: 0.5 }]) {
      const open = PhraseAdapter.create(unet, config, { seed: 10 });
      const probed = attachEipa(unet, open);
      const out = unet.forward(x.latents, 1, x.phrases.tensor, {
        encoderAttentionMask: x.phrases.mask,
        context: probed.context(x.phrases, { zeroGates: true }),
      });
      const actual = await snapshot(out);
      for (const [i, a] of actual.entries()) expect(Buffer.from(a.buffer).equals(Buffer.from(expected[i].buffer))).toBe(true);
      for (const state of probed.phraseStates(out.outputs, x.phrases)) expect(state.tensor).toBe(x.phrases.tensor);
      tf.dispose([out.sample, ...Object.values(out.outputs).filter((t) => t !== x.phrases.tensor)]); // the states are the phrases themselves
      probed.detach();
      open.dispose();
    }
    tf.dispose(x);
  });

  it('injects after self-attention through the block fuser point, with attention maps; gate magnitudes per kind', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { ...OPEN, extract_gate: 'scalar', gate_init: 0.5 }, { seed: 11 });
    const magnitudes = await adapter.gateMagnitudes();
    expect(magnitudes.extract).toBeCloseTo(Math.tanh(0.5), 6);
    expect(magnitudes.inject).toBeCloseTo(Math.tanh(0.5), 6);
    const key = 'up_blocks.2.attentions.1.transformer_blocks.0.inject';
    expect(adapter.parameters.get(`${key}.gate`).shape).toEqual([unet.transformerBlocks().find((b) => `${b.path}.inject` === key)?.channels]);
    expect(adapter.parameters.get(`${key}.linear.weight`).shape).toEqual([16, 32]); // phrases (32) → the block's 16 channels
    (adapter.parameters.get(`${key}.gate`) as tf.Variable).assign(tf.tensor1d(Array.from({ length: 16 }, (_, i) => (i % 2 ? 0.2 : -0.6))));
    expect((await adapter.gateMagnitudes()).inject).toBeCloseTo((6 * Math.tanh(0.5) + (8 * Math.tanh(0.2) + 8 * Math.tanh(0.6)) / 16) / 7, 6);
    const fuser: string[] = [];
    const removeSpy = unet.addBlockHook(/\.fuser$/, { postForward: (path, t) => void fuser.push(`${path} [${t.shape}]`) });
    const eipa = attachEipa(unet, adapter, { recordAttention: true });
    const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
    removeSpy();
    expect(fuser).toContain('up_blocks.2.attentions.1.transformer_blocks.0.fuser [2,256,16]');
    expect(fuser).toHaveLength(7);
    const att = eipa.attention(out.outputs)['up_blocks.2.attentions.1.transformer_blocks.0'];
    expect(att.shape).toEqual([2, 16 * 16, 3]); // to the phrase tokens only
    expect(Math.max(...(await tf.slice(att, [1, 0, 2], [1, -1, 1]).data()))).toBe(0);
    tf.dispose([x, out]);
    eipa.detach();
    adapter.dispose();
  });

  it('replays recorded phrase states: its own reproduce the forward bit for bit; another image’s change it and reach the levels', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, OPEN, { seed: 12 });
    const eipa = attachEipa(unet, adapter, { levels: taps.levels });
    const run = (latents: tf.Tensor4D, options: Parameters<EipaAttachment['context']>[1]) =>
      unet.forward(latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases, options) });
    const own = run(x.latents, { recordStates: true });
    const states = eipa.blockStates(own.outputs);
    expect(Object.keys(states)).toEqual(adapter.blocks.map((b) => b.path));
    expect(states['mid_block.attentions.0.transformer_blocks.0'].shape).toEqual([2, 3, 32]);
    const replayed = run(x.latents, { replayStates: states });
    const [a, b] = [await snapshot(own), await snapshot(replayed)];
    for (const [i, v] of a.entries()) expect(Buffer.from(v.buffer).equals(Buffer.from(b[i].buffer))).toBe(true);
    const swapped = tf.reverse(x.latents, 0) as tf.Tensor4D; // the other image
    const donor = run(swapped, { recordStates: true });
    const probed = run(x.latents, { replayStates: eipa.blockStates(donor.outputs) });
    const c = await snapshot(probed);
    expect(Math.max(...c[0].map((v, i) => Math.abs(v - a[0][i])))).toBeGreaterThan(1e-4);
    const last = expectDefined(eipa.phraseStates(probed.outputs, x.phrases).at(-1), 'the last phrase state').tensor;
    expect(
      Buffer.from((await last.data()).buffer).equals(
        Buffer.from((await expectDefined(eipa.phraseStates(donor.outputs, x.phrases).at(-1), "the donor's last phrase state").tensor.data()).buffer),
      ),
    ).toBe(true);
    expect(() => eipa.blockStates(replayed.outputs)).toThrow(
      "EipaAttachment.blockStates: no phrase state of block 'down_blocks.0.attentions.0.transformer_blocks.0' in these outputs; make the forward's context with {recordStates: true}",
    );
    const { 'down_blocks.0.attentions.0.transformer_blocks.0': _dropped, ...partial } = states;
    expect(() => eipa.context(x.phrases, { replayStates: partial })).toThrow(
      "EipaAttachment.context: replayStates has no phrase state of block 'down_blocks.0.attentions.0.transformer_blocks.0'",
    );
    tf.dispose([x, own, replayed, swapped, donor, probed]);
    eipa.detach();
    adapter.dispose();
  });

  it('gets a gradient to every parameter of the new options through the frozen UNet', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { ...OPEN, extract_gate: 'per_channel', bottleneck_dim: 16, num_heads: 2 }, { seed: 13 });
    const eipa = attachEipa(unet, adapter, { levels: taps.levels });
    const target = tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 5);
    const loss = () =>
      tf.tidy(() => {
        const out = unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) });
        const stateTerm = tf.addN(eipa.phraseStates(out.outputs, x.phrases).map((s) => tf.mean(tf.square(s.tensor))));
        return tf.add(tf.mean(tf.square(tf.sub(out.sample, target))), stateTerm) as tf.Scalar;
      });
    const { grads, value } = tf.variableGrads(loss, adapter.trainableVariables());
    const silent: string[] = [];
    for (const key of adapter.parameters.keys()) {
      const g = grads[(adapter.parameters.get(key) as tf.Variable).name];
      if (!g || (await tf.max(tf.abs(g)).data())[0] === 0) silent.push(key);
    }
    expect(silent).toEqual([]);
    expect(adapter.parameters.keys().filter((k) => /self_attn|ffn|inject\.linear/.test(k)).length).toBe(7 * (10 + 6 + 2)); // per block: self_attn (norm + 4 linears), ffn_norm + fc1 + fc2, the inject projection
    tf.dispose([value, grads, x, target]);
    eipa.detach();
    adapter.dispose();
  });

  it('saves and loads the new options bit for bit; their weights under another config are a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eipa-'));
    const adapter = PhraseAdapter.create(unet, OPEN, { seed: 14 });
    await adapter.save(dir);
    const loaded = await PhraseAdapter.fromPretrained(dir, unet);
    expect(loaded.config).toEqual(adapter.config);
    expect(loaded.parameters.keys().sort()).toEqual(adapter.parameters.keys().sort());
    for (const k of adapter.parameters.keys()) await expectClose(loaded.parameters.get(k), await adapter.parameters.get(k).data(), 0, k);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, extract_ffn_dim: 0 }));
    await expect(PhraseAdapter.fromPretrained(dir, unet)).rejects.toThrow(
      /unexpected tensors .*'down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.extract\.ffn\.fc1\.bias'/,
    );
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, inject_gate: 'scalar' }));
    await expect(PhraseAdapter.fromPretrained(dir, unet)).rejects.toThrow(
      /'down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.inject\.gate' has shape \[16\], expected \[1\]/,
    );
    adapter.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('does not leak in an adapted forward', async () => {
    const x = inputs();
    const adapter = PhraseAdapter.create(unet, { gate_init: 0.5 });
    const eipa = attachEipa(unet, adapter, { recordAttention: true });
    await expectNoLeak(
      () => unet.forward(x.latents, 1, x.phrases.tensor, { encoderAttentionMask: x.phrases.mask, context: eipa.context(x.phrases) }),
      'adapted UNet forward',
    );
    eipa.detach();
    tf.dispose(x);
    adapter.dispose();
  });
});
