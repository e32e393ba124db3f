import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { generateSyntheticBenchmark, type PngSample } from '@png/png-data';
import { encodeSamples, gatherBatch, readGroundedSamples } from './benchmark_samples';
import { PngGrounder } from './png_grounder';
import { SMALL_GROUNDER_CONFIG } from './test_support';

const EMBEDDED = path.join(__dirname, '..', '..', 'diffusion-backbone', 'models', 'png-tiny-sd');
const bits = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer);

describe('encodeSamples / gatherBatch with caption tokens (embedded backbone, wasm)', () => {
  let dir: string;
  let backbone: DiffusionBackbone;
  let samples: PngSample[];
  beforeAll(async () => {
    await setBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-samples-'));
    await generateSyntheticBenchmark(path.join(dir, 'data'), { seed: 4, train: 0, val: 3 });
    backbone = await DiffusionBackbone.fromPretrained(EMBEDDED);
    samples = (await readGroundedSamples(path.join(dir, 'data'), 'val2017')).samples;
    // a caption of more than one encoder window among them (its phrase spans stay valid: text is appended)
    samples[1] = { ...samples[1], narrative: { ...samples[1].narrative, caption: samples[1].narrative.caption + ' and then'.repeat(40) } };
  });
  afterAll(() => {
    backbone.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('caches the caption tokens across chunks, padded to the most windows, and gathers them with the batch', async () => {
    const windows = samples.map((s) => backbone.tokenizer.chunk(s.narrative.caption).windows.length);
    expect(windows[1]).toBeGreaterThan(1);
    const k = Math.max(...windows);
    // one grounder at a time: a UNet carries one EIPA attachment
    const phrasesOnly = PngGrounder.create(backbone, SMALL_GROUNDER_CONFIG);
    const plain = encodeSamples(phrasesOnly, samples, { size: 32, maxPhrases: 4, chunk: 2 });
    phrasesOnly.dispose();
    expect(plain.phrases.caption).toBeUndefined();
    const withCaption = PngGrounder.create(backbone, { ...SMALL_GROUNDER_CONFIG, context: 'both' });
    const encoded = encodeSamples(withCaption, samples, { size: 32, maxPhrases: 4, chunk: 2 });
    withCaption.dispose();
    const caption = encoded.phrases.caption;
    if (!caption) throw new Error("encodeSamples gave no caption tokens for a grounder with context 'both'");
    const d = backbone.unet.config.cross_attention_dim;
    expect(caption.tensor.shape).toEqual([samples.length, k * 77, d]);
    const mask = Array.from(await caption.mask.data());
    for (const [i, w] of windows.entries()) expect(mask.slice(i * k * 77, (i + 1) * k * 77).reduce((a: number, b: number) => a + b, 0)).toBe(w * 77);
    expect((await bits(encoded.phrases.tensor)).equals(await bits(plain.phrases.tensor))).toBe(true); // the phrases do not change
    const batch = gatherBatch(encoded, [2, 0]);
    const rows = tf.gather(caption.tensor, [2, 0]);
    const batchCaption = expectDefined(batch.phrases.caption, 'batch.phrases.caption');
    expect(batchCaption.tensor.shape).toEqual([2, k * 77, d]);
    expect((await bits(batchCaption.tensor)).equals(await bits(rows))).toBe(true);
    // the phrase spans follow their samples, cut to the batch's phrase slots like the phrases
    expect(caption.spans.shape).toEqual([samples.length, 4, 2]);
    const p = batch.phrases.tensor.shape[1];
    const spans = caption.spans.arraySync();
    expect(batchCaption.spans.arraySync()).toEqual([2, 0].map((i) => spans[i].slice(0, p)));
    expect(gatherBatch(plain, [0]).phrases.caption).toBeUndefined();
    // targets are kept one byte a pixel and handed out as float32 0/1, cut to the batch's phrase slots
    expect(encoded.targets.dtype).toBe('bool');
    expect(batch.targets.dtype).toBe('float32');
    const keptTargets = tf.cast(tf.slice(tf.gather(encoded.targets, [2, 0]), [0, 0, 0, 0], [-1, -1, -1, p]), 'float32');
    expect(Array.from(await batch.targets.data())).toEqual(Array.from(await keptTargets.data()));
    expect(new Set(await batch.targets.data())).toEqual(new Set([0, 1]));
    tf.dispose([
      plain.latents,
      plain.phrases,
      plain.targets,
      encoded.latents,
      encoded.phrases,
      encoded.targets,
      batch,
      rows,
      keptTargets,
    ] as tf.TensorContainer);
  });

  it("caches each phrase's sentence state (text.sentence_context) across chunks as encodePhrases gives it, and gathers it like the phrases", async () => {
    const grounder = PngGrounder.create(backbone, { ...SMALL_GROUNDER_CONFIG, text: { sentence_context: true } });
    const encoded = encodeSamples(grounder, samples, { size: 32, maxPhrases: 4, chunk: 2 });
    const direct = grounder.encodePhrases(samples.map((s) => ({ caption: s.narrative.caption, phrases: s.narrative.phrases.slice(0, 4) })));
    grounder.dispose();
    const sentence = expectDefined(encoded.phrases.sentence, 'encoded.phrases.sentence');
    const d = backbone.unet.config.cross_attention_dim;
    expect(sentence.shape).toEqual([samples.length, 4, d]);
    const p = direct.tensor.shape[1];
    expect((await bits(tf.slice(sentence, [0, 0, 0], [-1, p, -1]))).equals(await bits(expectDefined(direct.sentence, 'direct.sentence')))).toBe(true);
    const batch = gatherBatch(encoded, [2, 0]);
    const q = batch.phrases.tensor.shape[1];
    expect(
      (await bits(expectDefined(batch.phrases.sentence, 'batch.phrases.sentence'))).equals(
        await bits(tf.slice(tf.gather(sentence, [2, 0]), [0, 0, 0], [-1, q, -1])),
      ),
    ).toBe(true);
    tf.dispose([encoded.latents, encoded.phrases, encoded.targets, direct, batch] as tf.TensorContainer);
  });
});
