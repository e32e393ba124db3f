import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FixtureIndex, sharedFixturesDir } from '@png/core/testing';
import { CLIPTokenizer } from './tokenization_clip';

const FIXTURE = path.join(sharedFixturesDir(), 'tiny-sd');
const TOKENIZER_DIR = path.join(FIXTURE, 'tokenizer');
const fx = new FixtureIndex(FIXTURE);
const CASES: Array<{ text: string; ids: number[] }> = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'tokenizer_cases.json'), 'utf8')).cases;
const CAPTIONS = fx.index.captions as string[];
const LONG_CAPTION = fx.index.long_caption as string;
/** The fixture's `text/<name>.input_ids` keys and the caption each encodes. */
const CAPTION_REFS: Array<[string, string]> = [...CAPTIONS.map((c, i): [string, string] => [`caption${i}`, c]), ['caption_long', LONG_CAPTION]];

let tok: CLIPTokenizer;
beforeAll(async () => {
  tok = await CLIPTokenizer.fromPretrained(TOKENIZER_DIR);
});

describe('CLIPTokenizer matches transformers (with ftfy)', () => {
  it('reads the special tokens and model_max_length', () => {
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.unkTokenId, tok.modelMaxLength, tok.vocabSize]).toEqual([998, 999, 999, 999, 77, 1000]);
  });

  it.each(CASES.map((c) => [c.text, c.ids] as const))('tokenizer case %j', (text, ids) => {
    expect(tok.encode(text, { truncation: true })).toEqual(ids);
  });

  it.each(CAPTION_REFS)('text/%s.input_ids (SD pipeline: max_length 77, truncation)', (name, caption) => {
    const ref = Array.from(fx.read(`text/${name}.input_ids`).data);
    const { inputIds, attentionMask } = tok.call(caption, { padding: 'max_length', truncation: true, maxLength: 77 });
    expect(inputIds).toEqual([ref]);
    const real = ref.indexOf(999) + 1; // bos … first eos
    expect(attentionMask[0]).toEqual(ref.map((_, i) => (i < real ? 1 : 0)));
  });

  it('pads a batch to its longest sequence', () => {
    const out = tok.call(['a dog', 'a photo of an astronaut'], { padding: 'longest' });
    expect(out.inputIds).toEqual([
      [998, 320, 566, 999, 999, 999, 999],
      [998, 320, 936, 526, 547, 688, 999],
    ]);
    expect(out.attentionMask).toEqual([
      [1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
    ]);
    expect(() => tok.call('a', { padding: 'max' as 'max_length' })).toThrow("padding must be 'max_length', 'longest' or false, got \"max\"");
    expect(() => tok.call('a', { truncation: true, maxLength: 1 })).toThrow('maxLength must be an integer ≥ 2');
  });

  it('keeps special-token strings whole and encodes "" as bos, eos', () => {
    expect(tok.encode('a<|endoftext|>dog')).toEqual([998, 320, 999, 566, 999]);
    expect(tok.encode('')).toEqual([998, 999]);
    expect(tok.call('', { padding: 'max_length' }).inputIds[0]).toEqual([998, 999, ...new Array(75).fill(999)]);
  });

  it('does not truncate unless asked (like transformers)', () => {
    expect(tok.encode(LONG_CAPTION).length).toBe(108 + 2);
  });

  it('BPE equals the reference merge loop on random words', () => {
    const vocab: Record<string, number> = JSON.parse(fs.readFileSync(path.join(TOKENIZER_DIR, 'vocab.json'), 'utf8'));
    const merges = fs.readFileSync(path.join(TOKENIZER_DIR, 'merges.txt'), 'utf8').trim().split('\n').slice(1);
    const ranks = new Map(merges.map((m, i) => [m, i]));
    // transformers' CLIPTokenizer.bpe, transcribed literally
    const referenceBpe = (token: string): string[] => {
      let word = [...token.slice(0, -1), `${token.slice(-1)}</w>`];
      while (word.length > 1) {
        let best: string | undefined;
        let bestRank = Number.POSITIVE_INFINITY;
        for (let i = 0; i < word.length - 1; i++) {
          const pair = `${word[i]} ${word[i + 1]}`;
          const rank = ranks.get(pair);
          if (rank !== undefined && rank < bestRank) {
            best = pair;
            bestRank = rank;
          }
        }
        if (best === undefined) break;
        const [first, second] = best.split(' ');
        const merged: string[] = [];
        for (let i = 0; i < word.length; ) {
          if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
            merged.push(first + second);
            i += 2;
          } else merged.push(word[i++]);
        }
        word = merged;
      }
      return word;
    };
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const letters = 'aeinorstlhcdgmpuy';
    for (let n = 0; n < 500; n++) {
      const word = Array.from({ length: 1 + Math.floor(random() * 24) }, () => letters[Math.floor(random() * letters.length)]).join('');
      expect(tok.encode(word)).toEqual([998, ...referenceBpe(word).map((p) => vocab[p]), 999]);
    }
  });
});

describe('CLIPTokenizer character spans', () => {
  it('gives each token the span of the original text it came from, through the cleaning', () => {
    const text = '  A Dog’s “BIRTHDAY” &amp;  ＣＡＴ\ncafe\u0301 ';
    const { ids, spans } = tok.encodeWithSpans(text);
    expect([998, ...ids, 999]).toEqual(tok.encode(text));
    const pieces = spans.map(([s, e]) => text.slice(s, e));
    expect(pieces).toEqual(['A', 'Dog', '’s', '“', 'BIRTHDAY', '”', '&amp;', 'ＣＡＴ', 'ca', 'f', 'e\u0301', 'e\u0301']); // café: ca·f·Ã·©, é split in bytes
  });

  it('maps bytes of one character that BPE splits to that character', () => {
    const text = 'x 🙂';
    const { ids, spans } = tok.encodeWithSpans(text);
    expect(ids.length).toBe(5); // x, then the emoji's 4 bytes
    expect(spans.slice(1)).toEqual(new Array(4).fill([2, 4]));
  });

  it('rejects a non-string text', () => {
    expect(() => tok.encodeWithSpans(42 as unknown as string)).toThrow('text must be a string, got number');
    expect(() => tok.chunk(undefined as unknown as string)).toThrow('got undefined');
    expect(() => tok.call(['ok', null as unknown as string])).toThrow('text[1] must be a string, got null');
  });
});

describe('CLIPTokenizer.chunk', () => {
  const all = () => tok.encodeWithSpans(LONG_CAPTION).ids;

  it('cuts the long caption into 77-token windows between words', () => {
    const { windows, attentionMasks } = tok.chunk(LONG_CAPTION);
    expect(windows.length).toBe(2);
    for (const w of windows) expect(w.length).toBe(77);
    // 108 tokens; a cut after 75 would split "very" (v·er·y at 73–75), so window 0 keeps 73
    const ref = Array.from(fx.read('text/caption_long.input_ids').data);
    expect(windows[0]).toEqual([...ref.slice(0, 74), 999, 999, 999]);
    expect(windows[1]).toEqual([998, ...all().slice(73), 999, ...new Array(77 - 37).fill(999)]);
    expect(attentionMasks.map((m) => m.reduce((a, b) => a + b))).toEqual([75, 37]);
    expect(windows.flatMap((w, i) => w.slice(1, attentionMasks[i].lastIndexOf(1)))).toEqual(all());
  });

  it('maps character spans to window positions, across the window boundary', () => {
    const { windows, tokenOfChar, phraseTokens } = tok.chunk(LONG_CAPTION);
    const sentence = 'a very detailed painting of a castle on a hill ';
    const rep = (k: number) => k * sentence.length;
    // the 7th "very" moved whole to window 1
    const very = rep(6) + 2;
    expect(LONG_CAPTION.slice(very, very + 4)).toBe('very');
    expect(tokenOfChar(very, very + 4)).toEqual([1, 2, 3].map((position) => ({ window: 1, position })));
    // "a hill a very" straddles the boundary
    const start = rep(5) + sentence.indexOf('a hill');
    const hits = tokenOfChar(start, very + 4);
    expect(hits).toEqual([
      { window: 0, position: 71 },
      { window: 0, position: 72 },
      { window: 0, position: 73 },
      { window: 1, position: 1 },
      { window: 1, position: 2 },
      { window: 1, position: 3 },
    ]);
    expect(hits.map(({ window, position }) => windows[window][position])).toEqual([320, 846, 320, 85, 567, 344]);
    // part of a word selects the word's overlapping tokens; whitespace selects nothing
    expect(tokenOfChar(very, very + 1)).toEqual([{ window: 1, position: 1 }]);
    expect(tokenOfChar(very - 1, very)).toEqual([]);
    expect(tokenOfChar(0, 0)).toEqual([]);
    // phrase spans map span by span, in order
    expect(
      phraseTokens([
        [start, very + 4],
        [very - 1, very],
        [very, very + 1],
      ]),
    ).toEqual([hits, [], [{ window: 1, position: 1 }]]);
  });

  it('splits a word only when it alone overflows a window', () => {
    const text = 'a astronautastronaut dog'; // a · astronau ta st ro n au t · dog
    const { windows, tokenOfChar } = tok.chunk(text, { windowTokens: 5 });
    expect(windows.map((w) => w.length)).toEqual([7, 7, 7]);
    expect(windows[0]).toEqual([998, 320, 999, 999, 999, 999, 999]);
    expect(windows[1]).toEqual([998, 687, 538, 521, 535, 77, 999]);
    expect(windows[2]).toEqual([998, 560, 339, 566, 999, 999, 999]);
    expect(tokenOfChar(2, 20).map((p) => p.window)).toEqual([1, 1, 1, 1, 1, 2, 2]);
  });

  it('gives one window for an empty text and validates its arguments', () => {
    const { windows, attentionMasks, tokenOfChar } = tok.chunk('');
    expect(windows).toEqual([[998, 999, ...new Array(75).fill(999)]]);
    expect(attentionMasks[0].slice(0, 3)).toEqual([1, 1, 0]);
    expect(() => tokenOfChar(0, 1)).toThrow('0 ≤ charStart ≤ charEnd ≤ 0');
    expect(() => tokenOfChar(-1, 0)).toThrow('got (-1, 0)');
    expect(() => tok.chunk('a', { windowTokens: 76 })).toThrow('windowTokens must be an integer in [1, 75]');
  });

  /** The ids each token is read as, in text order (reconstructs the text's ids when every token is read once). */
  const readIds = (text: string, chunks: ReturnType<CLIPTokenizer['chunk']>) =>
    chunks.tokenOfChar(0, text.length).map(({ window, position }) => chunks.windows[window][position]);

  it('overlaps windows by `overlap` tokens and reads each token where it has the most left context', () => {
    const plain = tok.chunk(LONG_CAPTION);
    const chunks = tok.chunk(LONG_CAPTION, { overlap: 20 });
    expect(chunks.windows.length).toBe(2);
    const real = chunks.attentionMasks.map((m) => m.reduce((a, b) => a + b) - 2);
    expect(real[0]).toBe(73); // window 0 as without overlap
    expect(chunks.windows[0]).toEqual(plain.windows[0]);
    // window 1 starts ≥ 20 tokens before window 0 ends, at a word start, and runs to the end
    const start = 108 - real[1];
    expect(73 - start).toBeGreaterThanOrEqual(20);
    expect(chunks.windows[1].slice(1, real[1] + 1)).toEqual(all().slice(start));
    expect(readIds(LONG_CAPTION, chunks)).toEqual(all()); // every token once, in order
    // the first token past the cut is read from window 1 after ≥ 20 tokens of left context
    const positions = chunks.tokenOfChar(0, LONG_CAPTION.length);
    expect(positions[72]).toEqual({ window: 0, position: 73 });
    expect(positions[73]).toEqual({ window: 1, position: 73 - start + 1 });
    expect(positions[73].position).toBeGreaterThan(20);
  });

  it('ends windows after a sentence when one lies in the window', () => {
    const text = 'a red dog runs. the cat sleeps on a mat! birds fly over the big green hill.';
    const chunks = tok.chunk(text, { windowTokens: 24, sentences: true }); // 18 + 14 tokens (the tiny vocabulary splits words)
    const bodies = chunks.windows.map((w, i) => w.slice(1, chunks.attentionMasks[i].lastIndexOf(1)));
    const sentence = (s: string) => tok.encodeWithSpans(s).ids;
    expect(bodies).toEqual([sentence('a red dog runs. the cat sleeps on a mat!'), sentence('birds fly over the big green hill.')]);
    expect(readIds(text, chunks)).toEqual(tok.encodeWithSpans(text).ids);
    // without `sentences` the first window is cut at a word boundary inside the third sentence
    expect(tok.chunk(text, { windowTokens: 24 }).attentionMasks[0].lastIndexOf(1) - 1).toBeGreaterThan(18);
    // a sentence longer than the window falls back to word boundaries
    const long = tok.chunk('the cat sleeps on a very soft mat all day.', { windowTokens: 4, sentences: true });
    expect(readIds('the cat sleeps on a very soft mat all day.', long)).toEqual(tok.encodeWithSpans('the cat sleeps on a very soft mat all day.').ids);
  });

  it('reads every token once with overlap and sentences together, and rejects a bad overlap', () => {
    const text = Array.from({ length: 9 }, (_, i) => `the ${['red', 'blue', 'green'][i % 3]} astronautastronaut number ${i} rides a horse.`).join(' ');
    for (const options of [
      { windowTokens: 7, overlap: 3 },
      { windowTokens: 7, overlap: 6, sentences: true },
      { windowTokens: 30, overlap: 10, sentences: true },
    ]) {
      const chunks = tok.chunk(text, options);
      expect(readIds(text, chunks)).toEqual(tok.encodeWithSpans(text).ids);
      for (const w of chunks.windows) expect(w.length).toBe(options.windowTokens + 2);
    }
    expect(() => tok.chunk('a', { overlap: 75 })).toThrow('overlap must be an integer in [0, 74] (below windowTokens), got 75');
    expect(() => tok.chunk('a', { overlap: -1 })).toThrow('got -1');
  });

  it('chunks a 10,000-character narrative in well under a second', () => {
    const words = 'in this picture we can see two dogs on the grass, a person holding a red umbrella and trees behind them.'.split(' ');
    let text = '';
    for (let i = 0; text.length < 10_000; i++) text += words[(i * 7) % words.length] + (i % 13 === 0 ? 'ish ' : ' ');
    const word = Array.from({ length: 10_000 }, (_, i) => 'aeinorst'[(i * i + 3 * i) % 8]).join('');
    const t0 = performance.now();
    const chunks = tok.chunk(text);
    const single = tok.chunk(word); // one 10,000-letter word: BPE must not be quadratic
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(1000);
    expect(chunks.windows.length).toBeGreaterThan(20);
    expect(single.windows.length).toBeGreaterThan(10);
    const last = text.lastIndexOf('dogs');
    const hit = chunks.tokenOfChar(last, last + 4);
    expect(hit.map(({ window, position }) => chunks.windows[window][position])).toEqual(tok.encodeWithSpans('dogs').ids);
  });
});

describe('CLIPTokenizer files', () => {
  const tempDirs: string[] = [];
  const tmp = () => {
    tempDirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tok-')));
    return tempDirs[tempDirs.length - 1];
  };
  afterAll(() => {
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  });
  const copy = (dir: string, files: string[]) => {
    for (const f of files) fs.copyFileSync(path.join(TOKENIZER_DIR, f), path.join(dir, f));
  };

  it('needs vocab.json and merges.txt only; special tokens may be plain strings', async () => {
    const dir = tmp();
    copy(dir, ['vocab.json', 'merges.txt']);
    const plain = await CLIPTokenizer.fromPretrained(dir);
    expect(plain.encode(CASES[0].text)).toEqual(CASES[0].ids);
    fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '!' }));
    const bangPad = await CLIPTokenizer.fromPretrained(dir); // SD 2.x style
    expect(bangPad.padTokenId).toBe(0);
    expect(bangPad.call('a', { padding: 'max_length', maxLength: 5 }).inputIds).toEqual([[998, 320, 999, 0, 0]]);
  });

  it('explains missing and inconsistent files', async () => {
    const dir = tmp();
    await expect(CLIPTokenizer.fromPretrained(path.join(dir, 'nope'))).rejects.toThrow('no such folder');
    copy(dir, ['vocab.json']);
    await expect(CLIPTokenizer.fromPretrained(dir)).rejects.toThrow(`${path.join(dir, 'merges.txt')}: missing`);
    copy(dir, ['merges.txt']);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { __type: 'AddedToken', content: '<|bos|>' } }));
    await expect(CLIPTokenizer.fromPretrained(dir)).rejects.toThrow('bos_token "<|bos|>" is not in vocab.json');
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{"model_max_length": 77,');
    await expect(CLIPTokenizer.fromPretrained(dir)).rejects.toThrow('tokenizer_config.json: not valid JSON');
    fs.rmSync(path.join(dir, 'tokenizer_config.json'));
    fs.mkdirSync(path.join(dir, 'special_tokens_map.json'));
    await expect(CLIPTokenizer.fromPretrained(dir)).rejects.toThrow(
      `${path.join(dir, 'special_tokens_map.json')}: is a folder; expected a CLIP tokenizer file (special_tokens_map.json)`,
    );
  });
});
