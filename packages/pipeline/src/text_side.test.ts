import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, gelu, setBackend, type CaptionTokens } from '@png/core';
import { expectClose, expectNoLeak, maxAbsDiff } from '@png/core/testing';
import { TextSide } from './text_side';

const D = 16;

/** Two narratives: 3 phrase slots (the second has one padding slot), 5 caption tokens (the second's last two in an absent window), phrase spans. */
function text(): { phrases: tf.Tensor3D; mask: tf.Tensor2D; caption: CaptionTokens } {
  return {
    phrases: tf.tidy(() =>
      tf.add(
        tf.mul(
          tf.randomNormal([2, 3, D], 0, 1, 'float32', 1),
          tf.tensor3d([
            [[1], [1], [1]],
            [[1], [1], [0]],
          ]),
        ),
        0,
      ),
    ) as tf.Tensor3D, // padding rows +0, as encodePhrases pools them
    mask: tf.tensor2d([
      [1, 1, 1],
      [1, 1, 0],
    ]),
    caption: {
      tensor: tf.randomNormal([2, 5, D], 0, 1, 'float32', 2) as tf.Tensor3D,
      mask: tf.tensor2d([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
      ]),
      spans: tf.tensor3d([
        [
          [0, 0],
          [1, 2],
          [4, 4],
        ],
        [
          [0, 1],
          [2, 2],
          [0, 0],
        ],
      ]),
    },
  };
}

/** Gives every weight of `side` a random value (so that zero-initialised outputs no longer hide the rest). */
function randomize(side: TextSide, seed: number): void {
  side.parameters.keys().forEach((k, i) => {
    const v = side.parameters.get(k) as tf.Variable;
    v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', seed + i));
  });
}

const bits = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer);

describe('TextSide', () => {
  beforeAll(() => setBackend('cpu'));

  it('sentence context: the phrases as pooled at initialisation, then + proj(LN(sentence)) on real phrases only', async () => {
    const x = text();
    const sentence = tf.randomNormal([2, 3, D], 0, 1, 'float32', 3) as tf.Tensor3D;
    const side = TextSide.create({ text_dim: D, sentence_context: true }, { seed: 7 });
    expect(side.parameters.keys().sort()).toEqual([
      'sentence_context.norm.bias',
      'sentence_context.norm.weight',
      'sentence_context.proj.bias',
      'sentence_context.proj.weight',
    ]);
    const initial = side.readSentence(x.phrases, x.mask, sentence);
    expect((await bits(initial)).equals(await bits(x.phrases))).toBe(true);
    randomize(side, 40);
    const p = (k: string) => side.parameters.get(k);
    const expected = tf.tidy(() => {
      const mean = tf.mean(sentence, -1, true);
      const normed = tf.add(
        tf.mul(tf.div(tf.sub(sentence, mean), tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(sentence, mean)), -1, true), 1e-5))), p('sentence_context.norm.weight')),
        p('sentence_context.norm.bias'),
      );
      const read = tf.add(
        tf.matMul(tf.reshape(normed, [-1, D]), p('sentence_context.proj.weight') as tf.Tensor2D, false, true),
        p('sentence_context.proj.bias'),
      ); // [B·P, D]
      return tf.add(x.phrases, tf.mul(tf.reshape(read, [2, 3, D]), tf.expandDims(x.mask, 2)));
    });
    const out = side.readSentence(x.phrases, x.mask, sentence);
    await expectClose(out, (await expected.data()) as Float32Array, 1e-5, 'phrases after their sentences');
    expect([...(await tf.slice(out, [1, 2, 0], [1, 1, -1]).data())]).toEqual([...(await tf.slice(x.phrases, [1, 2, 0], [1, 1, -1]).data())]); // the padding slot
    expect(side.readCaption(out, x.mask, undefined)).toBe(out); // no caption attention
    expect(() => side.readSentence(x.phrases, x.mask, undefined)).toThrow(
      "TextSide: sentence_context reads each phrase's sentence, and these phrase features have none; encode them with encodePhrases(…, {sentence: true})",
    );
    const short = tf.zeros([2, 2, D]) as tf.Tensor3D;
    expect(() => side.readSentence(x.phrases, x.mask, short)).toThrow('TextSide: sentence states [2,2,16] do not match the phrases [2,3,16]');
    await expectNoLeak(() => side.readSentence(x.phrases, x.mask, sentence), 'TextSide.readSentence');
    const without = TextSide.create({ text_dim: D, caption_attention: true, num_heads: 4, dim_feedforward: 24 }, { seed: 1 });
    expect(without.readSentence(x.phrases, x.mask, undefined)).toBe(x.phrases); // no sentence context: the phrases as given
    tf.dispose([x, sentence, initial, expected, out, short]);
    side.dispose();
    without.dispose();
  });

  it("output_init 'default': sentence context and caption attention change the phrases from the first step", async () => {
    const x = text();
    const sentence = tf.randomNormal([2, 3, D], 0, 1, 'float32', 3) as tf.Tensor3D;
    const open = TextSide.create(
      { text_dim: D, sentence_context: true, caption_attention: true, num_heads: 4, dim_feedforward: 24, output_init: 'default' },
      { seed: 8 },
    );
    for (const k of ['sentence_context.proj.weight', 'caption_attention.to_out.weight', 'caption_attention.fc2.weight']) {
      const w = await open.parameters.get(k).data();
      const bound = 1 / Math.sqrt(k.includes('fc2') ? 24 : D); // PyTorch's Linear init: U(−1/√in, 1/√in)
      expect([k, w.every((v) => Math.abs(v) <= bound) && w.some((v) => Math.abs(v) > bound / 2)]).toEqual([k, true]);
    }
    const read = open.readCaption(open.readSentence(x.phrases, x.mask, sentence), x.mask, x.caption);
    expect(maxAbsDiff(await tf.slice(read, [0, 0, 0], [1, 1, -1]).data(), await tf.slice(x.phrases, [0, 0, 0], [1, 1, -1]).data())).toBeGreaterThan(1e-2);
    expect([...(await tf.slice(read, [1, 2, 0], [1, 1, -1]).data())]).toEqual([...(await tf.slice(x.phrases, [1, 2, 0], [1, 1, -1]).data())]); // padding
    expect(() => TextSide.create({ text_dim: D, output_init: 'ones' } as never)).toThrow(
      `Error in TextSideConfig.output_init: expected 'zeros' or 'default', got "ones"`,
    );
    tf.dispose([x, sentence, read]);
    open.dispose();
  });

  it('caption attention leaves the phrases exactly as pooled at initialisation', async () => {
    const x = text();
    const side = TextSide.create({ text_dim: D, caption_attention: true, num_heads: 4, dim_feedforward: 24 }, { seed: 1 });
    expect(side.parameters.keys().sort()).toEqual(
      ['fc1', 'fc2', 'norm_ff', 'norm_kv', 'norm_q', 'to_k', 'to_out', 'to_q', 'to_v']
        .flatMap((m) => [`caption_attention.${m}.bias`, `caption_attention.${m}.weight`])
        .sort(),
    );
    const out = side.readCaption(x.phrases, x.mask, x.caption);
    expect(out.shape).toEqual([2, 3, D]);
    expect((await bits(out)).equals(await bits(x.phrases))).toBe(true);
    expect(side.adaptPrompt(x.phrases)).toBe(x.phrases); // no text adapter: the prompt as given
    tf.dispose([x, out]);
    side.dispose();
  });

  it('caption attention reads every real caption token, no absent one, and updates no padding phrase', async () => {
    const x = text();
    const side = TextSide.create({ text_dim: D, caption_attention: true, num_heads: 4, dim_feedforward: 24 }, { seed: 2 });
    randomize(side, 10);
    const out = side.readCaption(x.phrases, x.mask, x.caption);
    const data = await out.data();
    const input = await x.phrases.data();
    const row = (a: ArrayLike<number>, b: number, p: number) => Array.from({ length: D }, (_, k) => a[(b * 3 + p) * D + k]);
    expect(maxAbsDiff(row(data, 0, 0), row(input, 0, 0))).toBeGreaterThan(1e-2);
    expect(row(data, 1, 2)).toEqual(row(input, 1, 2)); // the padding slot
    // the second narrative's absent tokens change nothing; its last real token does
    const edit = (t: number) => {
      const c = x.caption.tensor.arraySync();
      c[1][t] = c[1][t].map((v, k) => v + (k % 2 ? 3 : -3)); // not a constant shift, which the LayerNorm would remove
      return { ...x.caption, tensor: tf.tensor3d(c) };
    };
    for (const [t, changes] of [
      [4, false],
      [2, true],
    ] as const) {
      const edited = edit(t);
      const again = side.readCaption(x.phrases, x.mask, edited);
      expect(maxAbsDiff(row(await again.data(), 1, 0), row(data, 1, 0)) > 1e-4).toBe(changes);
      tf.dispose([again, edited.tensor]);
    }
    expect(() => side.readCaption(x.phrases, x.mask, undefined)).toThrow(
      'TextSide: caption_attention reads the caption token states, and these phrase features have none',
    );
    await expectNoLeak(() => side.readCaption(x.phrases, x.mask, x.caption), 'TextSide.readCaption');
    tf.dispose([x, out]);
    side.dispose();
  });

  it('relative positions: zero at initialisation; a bias on one distance makes each phrase read the token at that distance', async () => {
    const x = text();
    const config = { text_dim: D, caption_attention: true, num_heads: 4, dim_feedforward: 24 };
    const plain = TextSide.create(config, { seed: 7 });
    const side = TextSide.create({ ...config, relative_positions: 2 }, { seed: 7 });
    expect(side.parameters.get('caption_attention.relative_bias').shape).toEqual([5, 4]); // buckets −2…2 × heads
    randomize(plain, 40);
    for (const k of plain.parameters.keys()) (side.parameters.get(k) as tf.Variable).assign(plain.parameters.get(k));
    const reference = plain.readCaption(x.phrases, x.mask, x.caption);
    expect((await bits(side.readCaption(x.phrases, x.mask, x.caption))).equals(await bits(reference))).toBe(true); // zero bias: as without
    // bucket +1 (index R + 1 = 3) wins every head: each phrase reads only the token right after its span
    (side.parameters.get('caption_attention.relative_bias') as tf.Variable).assign(
      tf.tidy(() => tf.mul(tf.tile(tf.reshape(tf.oneHot(tf.tensor1d([3], 'int32'), 5), [5, 1]), [1, 4]), 1e4)),
    );
    const out = await side.readCaption(x.phrases, x.mask, x.caption).data();
    const caption = x.caption.tensor.arraySync();
    // the token right after each span [0, 0], [1, 2] (narrative 0), [0, 1] (narrative 1): a real token each
    for (const [b, p, t] of [
      [0, 0, 1],
      [0, 1, 3],
      [1, 0, 2],
    ] as const) {
      // a caption whose every token is token t: attention reads token t whatever its weights
      const only = { ...x.caption, tensor: tf.tensor3d(caption.map((rows, i) => rows.map((row) => (i === b ? caption[b][t] : row)))) };
      const expected = await plain.readCaption(x.phrases, x.mask, only).data();
      const row = (a: ArrayLike<number>) => Array.from({ length: D }, (_, k) => a[(b * 3 + p) * D + k]);
      expect(maxAbsDiff(row(out), row(expected))).toBeLessThan(1e-4);
      only.tensor.dispose();
    }
    tf.dispose([x, reference]);
    side.dispose();
    plain.dispose();
  });

  it('gets gradients to every weight (the zero-initialised outputs first)', async () => {
    const x = text();
    const side = TextSide.create(
      { text_dim: D, sentence_context: true, caption_attention: true, num_heads: 4, dim_feedforward: 24, relative_positions: 2, text_adapter: true },
      { seed: 3 },
    );
    const weights = tf.randomNormal([2, 3, D], 0, 1, 'float32', 4);
    const sentence = tf.randomNormal([2, 3, D], 0, 1, 'float32', 5) as tf.Tensor3D;
    const f = () =>
      tf.tidy(
        () => tf.sum(tf.mul(side.adaptPrompt(side.readCaption(side.readSentence(x.phrases, x.mask, sentence), x.mask, x.caption)), weights)) as tf.Scalar,
      );
    const norms = async () => {
      const { grads, value } = tf.variableGrads(f, side.trainableVariables());
      const out: Record<string, number> = {};
      for (const k of side.parameters.keys()) out[k] = (await tf.max(tf.abs(grads[(side.parameters.get(k) as tf.Variable).name])).data())[0];
      tf.dispose([grads, value]);
      return out;
    };
    const initial = await norms();
    for (const k of [
      'sentence_context.proj.weight',
      'sentence_context.proj.bias',
      'caption_attention.to_out.weight',
      'caption_attention.to_out.bias',
      'caption_attention.fc2.weight',
      'text_adapter.gamma',
      'text_adapter.fc.2.bias',
    ])
      expect(initial[k]).toBeGreaterThan(0);
    expect(initial['caption_attention.to_q.weight']).toBe(0); // behind the zero output until it opens
    expect(initial['sentence_context.norm.weight']).toBe(0);
    randomize(side, 20);
    const open = await norms();
    for (const k of side.parameters.keys()) expect(open[k]).toBeGreaterThan(0);
    tf.dispose([x, weights, sentence]);
    side.dispose();
  });

  it("is VPD's text adapter: x + γ ⊙ fc.2(GELU(fc.0(x))), γ per channel from 1e-4", async () => {
    const x = text();
    const side = TextSide.create({ text_dim: D, text_adapter: true }, { seed: 5 });
    expect(side.parameters.keys().sort()).toEqual([
      'text_adapter.fc.0.bias',
      'text_adapter.fc.0.weight',
      'text_adapter.fc.2.bias',
      'text_adapter.fc.2.weight',
      'text_adapter.gamma',
    ]);
    const gamma = side.parameters.get('text_adapter.gamma');
    expect(gamma.shape).toEqual([D]);
    expect([...(await gamma.data())]).toEqual(new Array(D).fill(Math.fround(1e-4)));
    (gamma as tf.Variable).assign(tf.linspace(-1, 1, D));
    const p = (k: string) => side.parameters.get(k);
    const expected = tf.tidy(() => {
      const linear = (t: tf.Tensor, w: string) =>
        tf.add(tf.matMul(tf.reshape(t, [-1, D]), p(`text_adapter.fc.${w}.weight`) as tf.Tensor2D, false, true), p(`text_adapter.fc.${w}.bias`));
      return tf.add(x.caption.tensor, tf.reshape(tf.mul(p('text_adapter.gamma'), linear(gelu(linear(x.caption.tensor, '0')), '2')), [2, 5, D]));
    });
    await expectClose(side.adaptPrompt(x.caption.tensor), (await expected.data()) as Float32Array, 1e-5, 'adapted prompt');
    expect(side.readCaption(x.phrases, x.mask, undefined)).toBe(x.phrases); // no caption attention: the phrases as given
    const closed = TextSide.create({ text_dim: D, text_adapter: true, text_adapter_gamma_init: 0 }, { seed: 5 });
    expect((await bits(closed.adaptPrompt(x.caption.tensor))).equals(await bits(x.caption.tensor))).toBe(true);
    tf.dispose([x, expected]);
    side.dispose();
    closed.dispose();
  });

  it('saves and loads bit for bit; weights of another config are an error naming the tensor', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'text-side-'));
    const side = TextSide.create(
      { text_dim: D, sentence_context: true, caption_attention: true, num_heads: 2, dim_feedforward: 8, text_adapter: true },
      { seed: 6 },
    );
    randomize(side, 30);
    await side.save(dir);
    const files = () => ({
      config: fs.readFileSync(path.join(dir, 'config.json'), 'utf8'),
      weights: new Uint8Array(fs.readFileSync(path.join(dir, 'model.safetensors'))),
    });
    const loaded = TextSide.fromFiles(files());
    expect(loaded.config).toEqual(side.config);
    for (const k of side.parameters.keys()) expect((await bits(loaded.parameters.get(k))).equals(await bits(side.parameters.get(k)))).toBe(true);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, dim_feedforward: 12 }));
    expect(() => TextSide.fromFiles(files(), 'run/text')).toThrow(
      /run\/text\/model\.safetensors: tensor 'caption_attention\.fc1\.weight' has shape \[8,16\], expected \[12,16\]/,
    );
    side.dispose();
    loaded.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('rejects bad configs naming the field, before allocating anything', () => {
    const before = tf.memory().numTensors;
    expect(() => TextSide.create({ text_dim: D, caption_attention: true, num_heads: 5 })).toThrow(
      'Error in TextSideConfig.num_heads: expected a divisor of text_dim (16), got 5',
    );
    expect(() => TextSide.create({ text_dim: D, caption_atention: true } as never)).toThrow(
      /TextSideConfig\.caption_atention: expected a known field \(did you mean 'caption_attention'\?\)/,
    );
    expect(() => TextSide.create({ text_dim: D, text_adapter: 'yes' } as never)).toThrow(ConfigError);
    expect(() => TextSide.create({ text_dim: D, text_adapter_gamma_init: Infinity })).toThrow(
      'Error in TextSideConfig.text_adapter_gamma_init: expected a finite number',
    );
    expect(tf.memory().numTensors).toBe(before);
    expect([
      TextSide.isEnabled({}),
      TextSide.isEnabled({ num_heads: 2 }),
      TextSide.isEnabled({ caption_attention: true }),
      TextSide.isEnabled({ text_adapter: true }),
      TextSide.isEnabled({ sentence_context: true }),
    ]).toEqual([false, false, true, true, true]);
    expect(() => TextSide.create({ text_dim: D, sentence_context: 1 } as never)).toThrow(/TextSideConfig\.sentence_context/);
  });
});
