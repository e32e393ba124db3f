import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { FixtureIndex, expectClose, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { CLIPTextModel } from './clip/modeling_clip';
import { CLIPTokenizer } from './clip/tokenization_clip';
import { encodePhrases, phrasePoolingMatrix, tokenizeNarratives } from './phrase_features';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');

describe('encodePhrases (wasm)', () => {
  let tokenizer: CLIPTokenizer;
  let textEncoder: CLIPTextModel;
  beforeAll(async () => {
    await setBackend('wasm');
    tokenizer = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'));
    textEncoder = await CLIPTextModel.fromPretrained(path.join(TINY, 'text_encoder'));
  });
  afterAll(() => textEncoder.dispose());

  it('averages the hidden states of the tokens each span covers, padding the batch', async () => {
    const caption = 'a photo of an astronaut riding a horse on mars';
    const refs = new FixtureIndex(TINY);
    const hidden = refs.read('text/caption0.last_hidden_state').data as Float32Array; // [1, 77, 32]
    const ids = tokenizer.encodeWithSpans(caption);
    const covered = (s: number, e: number) => ids.spans.map(([a, b], t) => (a < e && b > s ? t + 1 : -1)).filter((t) => t >= 0); // +1: bos
    const mean = (tokens: number[]) => Array.from({ length: 32 }, (_, k) => tokens.reduce((acc, t) => acc + hidden[t * 32 + k], 0) / tokens.length);
    const spans: Array<[number, number]> = [
      [11, 24], // an astronaut
      [32, 39], // a horse
    ];
    const out = encodePhrases(tokenizer, textEncoder, [{ caption, phrases: spans }, { caption: 'mars', phrases: [[0, 4]] }], { maxPhrases: 4 });
    expect(out.tensor.shape).toEqual([2, 2, 32]);
    expect([...(await out.mask.data())]).toEqual([1, 1, 1, 0]);
    await expectClose(tf.slice(out.tensor, [0, 0, 0], [1, 2, -1]), [...mean(covered(...spans[0])), ...mean(covered(...spans[1]))], 1e-4, 'pooled phrases');
    expect([...(await tf.slice(out.tensor, [1, 1, 0], [1, 1, -1]).data())].every((v) => v === 0)).toBe(true);
    tf.dispose(out);
  });

  it('pools phrases past the 75-token window of a long narrative, without leaking', async () => {
    const caption = `${Array(12).fill('a very detailed painting of a castle on a hill').join(' and ')} with a red dragon`;
    const start = caption.indexOf('a red dragon');
    expect(tokenizer.encode(caption).length).toBeGreaterThan(77);
    await expectNoLeak(() => encodePhrases(tokenizer, textEncoder, [{ caption, phrases: [[0, 1], [start, caption.length]] }], { maxPhrases: 2 }), 'encodePhrases');
  });

  it('names the narrative and phrase of bad input', () => {
    const enc = (narratives: never[] | Parameters<typeof encodePhrases>[2]) => () => encodePhrases(tokenizer, textEncoder, narratives as Parameters<typeof encodePhrases>[2], { maxPhrases: 2 });
    expect(enc([])).toThrow('no narratives');
    expect(enc([{ caption: '', phrases: [[0, 1]] }])).toThrow('narrative 0: the caption is empty');
    expect(enc([{ caption: 'a dog', phrases: [] }])).toThrow('narrative 0: 0 phrases');
    expect(enc([{ caption: 'a dog', phrases: [[0, 1], [2, 5], [0, 5]] }])).toThrow('narrative 0: 3 phrases, above the configured maximum of 2 (max_phrases)');
    expect(enc([{ caption: 'a dog', phrases: [[0, 1]] }, { caption: 'a cat', phrases: [[3, 9]] }])).toThrow('narrative 1, phrase 0: span [3, 9) is not a non-empty range inside the 5-character caption');
    expect(enc([{ caption: 'a  dog', phrases: [[1, 2]] }])).toThrow('narrative 0, phrase 0: span [1, 2) holds only white space');
    expect(enc([{ caption: 'a dog', phrases: [[0, 1]] }, { caption: 'a \u0001 dog', phrases: [[4, 7], [2, 3]] }])).toThrow('narrative 1, phrase 1: span [2, 3) ("\u0001") covers no token'); // ftfy drops control characters
  });

  it('maps each phrase to the tokens its span covers, in every window', () => {
    const caption = `${Array(12).fill('a very detailed painting of a castle on a hill').join(' and ')} with a red dragon`;
    const [narrative] = tokenizeNarratives(tokenizer, [{ caption, phrases: [[2, 6], [caption.length - 6, caption.length]] }], 2);
    const last = narrative.chunks.windows.length - 1;
    expect(last).toBeGreaterThan(0);
    expect(narrative.phrases).toEqual(narrative.chunks.phraseTokens([[2, 6], [caption.length - 6, caption.length]]));
    expect(narrative.phrases[0].map((t) => [t.window, t.position])).toEqual(tokenizer.encodeWithSpans('very').ids.map((_, k) => [0, 2 + k])); // after bos and "a"
    expect(narrative.phrases[1].every((t) => t.window === last)).toBe(true);
  });

  it('builds the mean-pooling matrix row by phrase, zero rows for absent phrases', async () => {
    const pool = phrasePoolingMatrix([[[0, 2], [3]], [[1, 2, 3]]], 2, 4); // 2 narratives × 2 phrases over 4 columns
    expect(pool.shape).toEqual([4, 4]);
    const third = Math.fround(1 / 3);
    expect([...(await pool.data())]).toEqual([0.5, 0, 0.5, 0, 0, 0, 0, 1, 0, third, third, third, 0, 0, 0, 0]);
    pool.dispose();
  });
});
