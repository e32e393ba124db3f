import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { FixtureIndex, expectClose, expectDefined, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { CLIPTextModel } from './clip/modeling_clip';
import { CLIPTokenizer } from './clip/tokenization_clip';
import { encodePhrases, phrasePoolingMatrix, sentenceSpan, tokenizeNarratives } from './phrase_features';

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
    const out = encodePhrases(
      tokenizer,
      textEncoder,
      [
        { caption, phrases: spans },
        { caption: 'mars', phrases: [[0, 4]] },
      ],
      { maxPhrases: 4 },
    );
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
    await expectNoLeak(
      () =>
        encodePhrases(
          tokenizer,
          textEncoder,
          [
            {
              caption,
              phrases: [
                [0, 1],
                [start, caption.length],
              ],
            },
          ],
          { maxPhrases: 2 },
        ),
      'encodePhrases',
    );
  });

  it('returns the caption token states as the UNet reads a prompt: windows in order, absent windows masked', async () => {
    const short = 'a photo of an astronaut riding a horse on mars';
    const long = `${Array(12).fill('a very detailed painting of a castle on a hill').join(' and ')} with a red dragon`;
    const narratives = [
      { caption: short, phrases: [[11, 24]] as Array<[number, number]> },
      { caption: long, phrases: [[long.length - 12, long.length]] as Array<[number, number]> },
    ];
    const windows = tokenizer.chunk(long).windows;
    expect(windows.length).toBe(3);
    const out = encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 2, caption: true });
    const caption = expectDefined(out.caption, 'out.caption');
    expect(caption.tensor.shape).toEqual([2, 3 * 77, 32]);
    expect([...(await caption.mask.data())]).toEqual([...new Array(77).fill(1), ...new Array(2 * 77).fill(0), ...new Array(3 * 77).fill(1)]);
    const refs = new FixtureIndex(TINY);
    await expectClose(
      tf.slice(caption.tensor, [0, 0, 0], [1, 77, -1]),
      refs.read('text/caption0.last_hidden_state').data as Float32Array,
      1e-4,
      'short caption, bos…eos and padding',
    );
    expect([...(await tf.slice(caption.tensor, [0, 77, 0], [1, -1, -1]).data())].every((v) => v === 0)).toBe(true);
    const encoded = tf.tidy(() => textEncoder.forward(tf.tensor2d(windows, undefined, 'int32')).lastHiddenState); // [3, 77, 32]
    await expectClose(tf.slice(caption.tensor, [1, 0, 0], [1, -1, -1]), encoded.dataSync() as Float32Array, 1e-5, 'long caption, its 3 windows');
    // each phrase's first and last token row in `caption.tensor`: window · 77 + position (the long caption's phrase in its third window)
    const rowsOf = (text: string, span: [number, number]) => {
      const tokens = tokenizer.chunk(text).phraseTokens([span])[0];
      return [tokens[0], tokens[tokens.length - 1]].map((t) => t.window * 77 + t.position);
    };
    const spans = caption.spans.arraySync();
    expect(spans).toEqual([[rowsOf(short, [11, 24])], [rowsOf(long, [long.length - 12, long.length])]]);
    expect(spans[0][0][0]).toBeGreaterThan(0); // after bos
    expect(spans[1][0][0]).toBeGreaterThanOrEqual(2 * 77);
    // the phrases are those of a call without `caption`
    const plain = encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 2 });
    expect(plain.caption).toBeUndefined();
    expect([...(await out.tensor.data())]).toEqual([...(await plain.tensor.data())]);
    // padded to captionWindows; a caption with more windows is an error naming it
    const wide = encodePhrases(tokenizer, textEncoder, narratives.slice(0, 1), { maxPhrases: 2, caption: true, captionWindows: 2 });
    expect(wide.caption?.tensor.shape).toEqual([1, 2 * 77, 32]);
    expect(() => encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 2, caption: true, captionWindows: 2 })).toThrow(
      'narrative 1: its caption takes 3 encoder windows, above captionWindows 2',
    );
    await expectNoLeak(() => encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 2, caption: true }), 'encodePhrases with caption');
    tf.dispose([out, encoded, plain, wide]);
  });

  it('cuts long captions as `windows` says: with overlap, a phrase past the cut reads more left context', async () => {
    const caption = `${Array(12).fill('a very detailed painting of a castle on a hill').join(' and ')} with a red dragon`;
    const cut = tokenizer
      .chunk(caption)
      .tokenOfChar(0, caption.length)
      .findIndex((t) => t.window === 1);
    const [s, e] = tokenizer.encodeWithSpans(caption).spans[cut]; // the first token of window 1 without overlap
    const narratives = [{ caption, phrases: [[s, e]] as Array<[number, number]> }];
    const hard = encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 1 });
    const overlapping = encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 1, windows: { overlap: 30 } });
    const [narrative] = tokenizeNarratives(tokenizer, narratives, 1, { overlap: 30 });
    expect(narrative.phrases[0][0].position).toBeGreaterThan(30); // read after ≥ 30 tokens of its window
    const a = await hard.tensor.data();
    const b = await overlapping.tensor.data();
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeGreaterThan(1e-3);
    tf.dispose([hard, overlapping]);
  });

  it('names the narrative and phrase of bad input', () => {
    const enc = (narratives: never[] | Parameters<typeof encodePhrases>[2]) => () =>
      encodePhrases(tokenizer, textEncoder, narratives as Parameters<typeof encodePhrases>[2], { maxPhrases: 2 });
    expect(enc([])).toThrow('no narratives');
    expect(enc([{ caption: '', phrases: [[0, 1]] }])).toThrow('narrative 0: the caption is empty');
    expect(enc([{ caption: 'a dog', phrases: [] }])).toThrow('narrative 0: 0 phrases');
    expect(
      enc([
        {
          caption: 'a dog',
          phrases: [
            [0, 1],
            [2, 5],
            [0, 5],
          ],
        },
      ]),
    ).toThrow('narrative 0: 3 phrases, above the configured maximum of 2 (max_phrases)');
    expect(
      enc([
        { caption: 'a dog', phrases: [[0, 1]] },
        { caption: 'a cat', phrases: [[3, 9]] },
      ]),
    ).toThrow('narrative 1, phrase 0: span [3, 9) is not a non-empty range inside the 5-character caption');
    expect(enc([{ caption: 'a  dog', phrases: [[1, 2]] }])).toThrow('narrative 0, phrase 0: span [1, 2) holds only white space');
    expect(
      enc([
        { caption: 'a dog', phrases: [[0, 1]] },
        {
          caption: 'a \u0001 dog',
          phrases: [
            [4, 7],
            [2, 3],
          ],
        },
      ]),
    ).toThrow('narrative 1, phrase 1: span [2, 3) ("\u0001") covers no token'); // ftfy drops control characters
  });

  it('maps each phrase to the tokens its span covers, in every window', () => {
    const caption = `${Array(12).fill('a very detailed painting of a castle on a hill').join(' and ')} with a red dragon`;
    const [narrative] = tokenizeNarratives(
      tokenizer,
      [
        {
          caption,
          phrases: [
            [2, 6],
            [caption.length - 6, caption.length],
          ],
        },
      ],
      2,
    );
    const last = narrative.chunks.windows.length - 1;
    expect(last).toBeGreaterThan(0);
    expect(narrative.phrases).toEqual(
      narrative.chunks.phraseTokens([
        [2, 6],
        [caption.length - 6, caption.length],
      ]),
    );
    expect(narrative.phrases[0].map((t) => [t.window, t.position])).toEqual(tokenizer.encodeWithSpans('very').ids.map((_, k) => [0, 2 + k])); // after bos and "a"
    expect(narrative.phrases[1].every((t) => t.window === last)).toBe(true);
  });

  it("with `sentence`, pools each phrase's sentence without the phrase's own tokens (0 where the phrase is its sentence)", async () => {
    const caption = 'There is a blue circle. On the far left there is a green square as well. a red ring';
    const at = (text: string): [number, number] => [caption.indexOf(text), caption.indexOf(text) + text.length];
    const spans = [at('a green square'), at('a red ring'), at('a blue circle')];
    const narratives = [{ caption, phrases: spans }];
    const out = encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 4, padTo: 4, sentence: true });
    const sentence = expectDefined(out.sentence, 'sentence states');
    expect(sentence.shape).toEqual([1, 4, 32]);
    // the reference: CLIP's states of the one window, averaged over the sentence's tokens that are not the phrase's
    const ids = tokenizer.encodeWithSpans(caption);
    const window = [tokenizer.bosTokenId, ...ids.ids, tokenizer.eosTokenId];
    const hidden = tf.tidy(() => textEncoder.forward(tf.tensor2d([window], undefined, 'int32')).lastHiddenState.arraySync()[0]);
    const covered = ([s, e]: readonly [number, number]) => ids.spans.flatMap(([a, b], t) => (a < e && b > s ? [t + 1] : [])); // +1: bos
    const expected = spans.map((span) => {
      const own = new Set(covered(span));
      const rest = covered(sentenceSpan(caption, span)).filter((t) => !own.has(t));
      return Array.from({ length: 32 }, (_, k) => (rest.length ? rest.reduce((acc, t) => acc + hidden[t][k], 0) / rest.length : 0));
    });
    await expectClose(tf.slice(sentence, [0, 0, 0], [1, 3, -1]), expected.flat(), 1e-4, 'sentence states');
    expect(expected[0].some((v) => v !== 0) && expected[2].some((v) => v !== 0)).toBe(true);
    expect(expected[1].every((v) => v === 0)).toBe(true); // "a red ring" is its whole sentence
    expect([...(await tf.slice(sentence, [0, 3, 0], [1, 1, -1]).data())].every((v) => v === 0)).toBe(true); // padding phrase
    tf.dispose(out);
    expect(encodePhrases(tokenizer, textEncoder, narratives, { maxPhrases: 4 }).sentence).toBeUndefined();
  });

  it('finds the sentence around a span: final punctuation and white space end one, punctuation inside a span or a number does not', () => {
    const text = 'I see a dog. On the left, "a cat!" Then 3.5 cm of Dr. Who? The end';
    const around = (phrase: string) => {
      const start = text.indexOf(phrase);
      const [s, e] = sentenceSpan(text, [start, start + phrase.length]);
      return text.slice(s, e);
    };
    expect(around('a dog')).toBe('I see a dog.');
    expect(around('a cat')).toBe('On the left, "a cat!"');
    expect(around('3.5 cm')).toBe('Then 3.5 cm of Dr.');
    expect(around('Dr. Who')).toBe('Then 3.5 cm of Dr. Who?'); // a span across a sentence end keeps both sides
    expect(around('The end')).toBe('The end'); // no final punctuation: to the text's end
    expect(around('a dog.')).toBe('I see a dog.');
  });

  it('builds the mean-pooling matrix row by phrase, zero rows for absent phrases', async () => {
    const pool = phrasePoolingMatrix([[[0, 2], [3]], [[1, 2, 3]]], 2, 4); // 2 narratives × 2 phrases over 4 columns
    expect(pool.shape).toEqual([4, 4]);
    const third = Math.fround(1 / 3);
    expect([...(await pool.data())]).toEqual([0.5, 0, 0.5, 0, 0, 0, 0, 1, 0, third, third, third, 0, 0, 0, 0]);
    pool.dispose();
  });
});
