import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type PhraseFeatures } from '@png/core';
import { FOLDER_FETCH_BASE, expectDefined, folderFetch, sharedFixturesDir } from '@png/core/testing';
import { DiffusionBackbone, FeatureTaps, encodePhrases } from '@png/diffusion-backbone';
import { PngGrounder, phraseEncoding, resolvePngGrounderConfig, type PngGrounderConfig } from './png_grounder';
import { SMALL_GROUNDER_CONFIG, TEST_NARRATIVES } from './test_support';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const SMALL: Partial<PngGrounderConfig> = SMALL_GROUNDER_CONFIG;
const narratives = TEST_NARRATIVES;
const TEXT = { caption_attention: true, num_heads: 4, dim_feedforward: 48, text_adapter: true };

const bits = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer);

/** Images [2, 32, 32, 3] in [-1, 1]. */
const images = () => tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 3) as tf.Tensor4D;

describe('PngGrounder text options on the tiny SD backbone (wasm)', () => {
  let backbone: DiffusionBackbone;
  beforeAll(async () => {
    await setBackend('wasm');
    backbone = await DiffusionBackbone.fromPretrained(TINY);
  });
  afterAll(() => backbone.dispose());

  it('by default reads the phrases alone: no caption tokens, no text side', () => {
    const config = resolvePngGrounderConfig(SMALL);
    expect([config.context, config.window_overlap, config.sentence_windows, config.text]).toEqual(['phrases', 0, false, {}]);
    expect(phraseEncoding(config)).toEqual({ maxPhrases: 4, windows: { overlap: 0, sentences: false }, caption: false, sentence: false });
    expect(
      phraseEncoding(
        resolvePngGrounderConfig({ ...SMALL, window_overlap: 20, sentence_windows: true, text: { caption_attention: true, sentence_context: true } }),
      ),
    ).toEqual({
      maxPhrases: 4,
      windows: { overlap: 20, sentences: true },
      caption: true,
      sentence: true,
    });
    const grounder = PngGrounder.create(backbone, SMALL, { seed: 1 });
    expect(grounder.text).toBeUndefined();
    expect(Object.keys(grounder.namedVariables()).some((k) => k.startsWith('text.'))).toBe(false);
    const phrases = grounder.encodePhrases(narratives);
    expect(phrases.caption).toBeUndefined();
    tf.dispose(phrases);
    grounder.dispose();
  });

  it.each([
    ['both', { context: 'both' }, true],
    ['caption', { context: 'caption', eipa: { ...SMALL.eipa, dynamic_prompt: false } }, false],
  ] as const)("context '%s' gives the frozen UNet the caption tokens (then the phrases) as its prompt", async (_context, config, withPhrases) => {
    const x = images();
    const grounder = PngGrounder.create(backbone, { ...SMALL, ...config }, { seed: 2 }); // gates at 0: the UNet stream is the static one
    const phrases = grounder.encodePhrases(narratives);
    const caption = expectDefined(phrases.caption, 'phrases.caption');
    expect(caption.tensor.shape).toEqual([2, 77, 32]); // one window each: bos…eos and CLIP's padding
    expect((await caption.mask.data()).every((v) => v === 1)).toBe(true);
    const out = grounder.forwardFeatures(x, phrases);
    const ours = await Promise.all(out.features.map((f) => bits(f.tensor)));
    tf.dispose(out);
    grounder.dispose(); // detaches
    const taps = new FeatureTaps(backbone.unet, { imageStride: 2 });
    const prompt = withPhrases ? tf.concat([caption.tensor, phrases.tensor], 1) : caption.tensor; // [2, 77 (+ P), 32]
    const mask = withPhrases ? tf.concat([caption.mask, phrases.mask], 1) : caption.mask;
    const latents = backbone.encodeImages(x);
    const plain = backbone.unet.forward(latents, 1, prompt as tf.Tensor3D, { encoderAttentionMask: mask as tf.Tensor2D });
    const reference = await Promise.all(taps.pyramid(plain.outputs).map((f) => bits(f.tensor)));
    taps.remove();
    for (const [i, r] of reference.entries()) expect(r.equals(ours[i])).toBe(true);
    tf.dispose([x, phrases, prompt, mask, latents, plain]);
  });

  it('starts equal to the model without a text side (caption attention and a closed text adapter), and trains it', async () => {
    const x = images();
    const last = async (g: PngGrounder, phrases: PhraseFeatures) => {
      const out = g.forwardFeatures(x, phrases);
      const b = await bits(out.predictions[out.predictions.length - 1]);
      tf.dispose(out);
      return b;
    };
    const plain = PngGrounder.create(backbone, { ...SMALL, context: 'both', eipa: { ...SMALL.eipa, gate_init: 0.3 } }, { seed: 3 });
    const phrases = plain.encodePhrases(narratives);
    const expected = await last(plain, phrases);
    plain.dispose();
    const closed = PngGrounder.create(
      backbone,
      { ...SMALL, context: 'both', eipa: { ...SMALL.eipa, gate_init: 0.3 }, text: { ...TEXT, text_adapter_gamma_init: 0 } },
      { seed: 3 },
    );
    expect((await last(closed, phrases)).equals(expected)).toBe(true);
    closed.dispose();
    // VPD's γ = 1e-4: near, not equal
    const open = PngGrounder.create(backbone, { ...SMALL, context: 'both', eipa: { ...SMALL.eipa, gate_init: 0.3 }, text: TEXT }, { seed: 3 });
    expect((await last(open, phrases)).equals(expected)).toBe(false);
    // the loss reaches every text-side output projection and the adapter, through the frozen UNet
    const latents = backbone.encodeImages(x);
    const targets = tf.cast(tf.greater(tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 4), 0.5), 'float32') as tf.Tensor4D;
    const named = open.namedVariables();
    const keys = Object.keys(named).filter((k) => k.startsWith('text.'));
    expect(keys).toEqual(
      expect.arrayContaining([
        'text.caption_attention.to_out.weight',
        'text.caption_attention.fc2.weight',
        'text.text_adapter.gamma',
        'text.text_adapter.fc.0.weight',
      ]),
    );
    const { grads, value } = tf.variableGrads(
      () => open.loss(latents, phrases, targets),
      keys.map((k) => named[k]),
    );
    for (const k of ['text.caption_attention.to_out.weight', 'text.caption_attention.fc2.weight', 'text.text_adapter.gamma', 'text.text_adapter.fc.2.weight']) {
      expect([k, (await tf.max(tf.abs(grads[named[k].name])).data())[0] > 0]).toEqual([k, true]);
    }
    tf.dispose([grads, value]);
    // gradient checkpointing of the UNet gives the text side the same gradients (the caption slots travel in the context)
    const gamma = named['text.text_adapter.gamma'];
    const grad = async () => {
      const { grads: g, value: v } = tf.variableGrads(() => open.loss(latents, phrases, targets), [gamma]);
      const data = await g[gamma.name].data();
      tf.dispose([g, v]);
      return data;
    };
    const direct = await grad();
    const off = open.enableGradientCheckpointing();
    const checkpointed = await grad();
    off();
    for (const [i, d] of direct.entries()) expect(Math.abs(d - checkpointed[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(d)));
    tf.dispose([x, phrases, latents, targets]);
    open.dispose();
  });

  it('sentence_context: the phrases read their sentences, equal to the grounder without at initialisation; the loss reaches it; features without sentences are an error', async () => {
    const x = images();
    const config = { ...SMALL, eipa: { ...SMALL.eipa, gate_init: 0.3 } };
    const plain = PngGrounder.create(backbone, config, { seed: 7 });
    const last = async (g: PngGrounder, phrases: PhraseFeatures) => {
      const out = g.forwardFeatures(x, phrases);
      const b = await bits(out.predictions[out.predictions.length - 1]);
      tf.dispose(out);
      return b;
    };
    const withoutSentence = plain.encodePhrases(narratives);
    const expected = await last(plain, withoutSentence);
    plain.dispose();
    const grounder = PngGrounder.create(backbone, { ...config, text: { sentence_context: true } }, { seed: 7 });
    const phrases = grounder.encodePhrases(narratives);
    expect(expectDefined(phrases.sentence, 'phrases.sentence').shape).toEqual(phrases.tensor.shape);
    expect(phrases.caption).toBeUndefined(); // the sentence states are pooled at encoding: no caption tokens needed
    expect((await last(grounder, phrases)).equals(expected)).toBe(true);
    const latents = backbone.encodeImages(x);
    const targets = tf.cast(tf.greater(tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 4), 0.5), 'float32') as tf.Tensor4D;
    const proj = grounder.namedVariables()['text.sentence_context.proj.weight'];
    const { grads, value } = tf.variableGrads(() => grounder.loss(latents, phrases, targets), [proj]);
    expect((await tf.max(tf.abs(grads[proj.name])).data())[0]).toBeGreaterThan(0);
    expect(() => grounder.forwardLatents(latents, withoutSentence)).toThrow(
      "TextSide: sentence_context reads each phrase's sentence, and these phrase features have none",
    );
    tf.dispose([x, withoutSentence, phrases, latents, targets, grads, value]);
    grounder.dispose();
  });

  it('saves the text side in text/ and reloads it (identical predictions); a missing text/ is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grounder-text-'));
    const config = { ...SMALL, context: 'both', window_overlap: 10, sentence_windows: true, eipa: { ...SMALL.eipa, gate_init: 0.2 }, text: TEXT } as const;
    const grounder = PngGrounder.create(backbone, config, { seed: 4 });
    for (const v of Object.entries(grounder.namedVariables())
      .filter(([k]) => k.startsWith('text.'))
      .map(([, v]) => v))
      v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', 5));
    await grounder.save(dir);
    expect(fs.readdirSync(path.join(dir, 'text')).sort()).toEqual(['config.json', 'model.safetensors']);
    const x = images();
    const a = grounder.forward(x, narratives);
    const expected = await bits(a.predictions[2]);
    tf.dispose(a);
    grounder.dispose();
    const fetch = folderFetch(dir);
    for (const load of [() => PngGrounder.fromPretrained(dir, backbone), () => PngGrounder.fromUrl(FOLDER_FETCH_BASE, backbone, { fetch })]) {
      const loaded = await load();
      expect(loaded.config).toEqual(resolvePngGrounderConfig(config));
      const b = loaded.forward(x, narratives);
      expect((await bits(b.predictions[2])).equals(expected)).toBe(true);
      tf.dispose(b);
      loaded.dispose();
    }
    fs.rmSync(path.join(dir, 'text'), { recursive: true });
    await expect(PngGrounder.fromPretrained(dir, backbone)).rejects.toThrow(`${path.join(dir, 'text', 'config.json')}: missing`);
    const files = (part: string) => ({
      config: fs.readFileSync(path.join(dir, part, 'config.json'), 'utf8'),
      weights: new Uint8Array(fs.readFileSync(path.join(dir, part, 'model.safetensors'))),
    });
    expect(() =>
      PngGrounder.fromFiles(
        { config: fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), eipa: files('eipa'), mlma: files('mlma'), decoder: files('decoder') },
        backbone,
        { name: 'run' },
      ),
    ).toThrow(
      'run/config.json: the config has a text side (text: {"caption_attention":true,"num_heads":4,"dim_feedforward":48,"text_adapter":true}) but no text/ files were given',
    );
    tf.dispose(x);
    fs.rmSync(dir, { recursive: true });
  });

  it('names the config field at fault, and phrase features without the caption tokens it reads', () => {
    expect(() => resolvePngGrounderConfig({ context: 'tokens' } as never)).toThrow(
      `Error in PngGrounderConfig.context: expected 'phrases', 'caption' or 'both', got "tokens"`,
    );
    expect(() => resolvePngGrounderConfig({ window_overlap: -1 })).toThrow('Error in PngGrounderConfig.window_overlap');
    expect(() => resolvePngGrounderConfig({ text: [] } as never)).toThrow('Error in PngGrounderConfig.text');
    const before = tf.memory().numTensors;
    expect(() => PngGrounder.create(backbone, { ...SMALL, window_overlap: 75 })).toThrow(
      'Error in PngGrounderConfig.window_overlap: expected an integer below the 75 tokens of an encoder window, got 75',
    );
    expect(() => PngGrounder.create(backbone, { ...SMALL, context: 'caption' })).toThrow(
      /Error in PngGrounderConfig\.context: expected 'phrases' or 'both' with EIPA's dynamic_prompt \('caption' gives the prompt no phrase slots; set eipa\.dynamic_prompt to false for it\), got "caption"/,
    );
    expect(() => PngGrounder.create(backbone, { ...SMALL, text: { caption_attention: true, num_heads: 5 } })).toThrow(
      'Error in TextSideConfig.num_heads: expected a divisor of text_dim (32), got 5',
    );
    expect(tf.memory().numTensors).toBe(before); // whatever was built first is freed
    const grounder = PngGrounder.create(backbone, { ...SMALL, text: { caption_attention: true, num_heads: 4 } }, { seed: 6 });
    const x = images();
    const latents = backbone.encodeImages(x);
    const phrases = encodePhrases(backbone.tokenizer, backbone.textEncoder, narratives, phraseEncoding(resolvePngGrounderConfig(SMALL))); // as a grounder that reads no caption encodes them
    expect(() => grounder.forwardLatents(latents, phrases)).toThrow(
      "PngGrounder: context 'phrases' with text.caption_attention reads the caption's token states, and these phrase features have none",
    );
    tf.dispose([x, latents, phrases]);
    grounder.dispose();
  });
});
