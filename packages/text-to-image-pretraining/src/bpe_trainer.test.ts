import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLIPTokenizer, saveClipTokenizerFiles } from '@png/diffusion-backbone';
import { trainClipBpe } from './bpe_trainer';

const corpus = ['A red circle above a blue square.', 'Two red squares on the grass,', 'the blue sky above the grass and a red circle'];

/** The token strings of `text` (no bos/eos). */
function pieces(tokenizer: CLIPTokenizer, files: { vocab: string }, text: string): string[] {
  const byId = Object.fromEntries(Object.entries(JSON.parse(files.vocab) as Record<string, number>).map(([t, id]) => [id, t]));
  return tokenizer.encodeWithSpans(text).ids.map((id) => byId[id]);
}

describe('trainClipBpe', () => {
  it('merges the corpus words into whole tokens and keeps byte fallback for unseen words', () => {
    const files = trainClipBpe(corpus);
    const tokenizer = CLIPTokenizer.fromFiles(files);
    // words seen at least twice become one token; 'square' (once as 'square', once as 'squares') shares its stem
    expect(pieces(tokenizer, files, 'a red circle above the grass')).toEqual(['a</w>', 'red</w>', 'circle</w>', 'above</w>', 'the</w>', 'grass</w>']);
    expect(pieces(tokenizer, files, 'zebra').join('')).toBe('zebra</w>');
    expect(tokenizer.encode('red').length).toBe(3); // bos, red, eos
  });

  it("has CLIP's vocabulary layout: bytes, bytes with </w>, one token per merge, then the special tokens", () => {
    const files = trainClipBpe(corpus, { vocabSize: 520 });
    const vocab = JSON.parse(files.vocab) as Record<string, number>;
    const merges = files.merges.trim().split('\n');
    expect(merges[0]).toBe('#version: 0.2');
    expect(merges.length - 1).toBe(6); // 520 − 512 − 2
    expect(Object.keys(vocab)).toHaveLength(520);
    expect(vocab['!']).toBe(0);
    expect(vocab['!</w>']).toBe(256);
    expect(vocab['<|startoftext|>']).toBe(518);
    expect(vocab['<|endoftext|>']).toBe(519);
    expect(new Set(Object.values(vocab)).size).toBe(520);
  });

  it('is deterministic and respects minFrequency', () => {
    expect(trainClipBpe(corpus)).toEqual(trainClipBpe(corpus));
    const rare = trainClipBpe(['unique words only'], { minFrequency: 2 });
    expect(rare.merges.trim()).toBe('#version: 0.2');
    expect(trainClipBpe(['unique words only'], { minFrequency: 1 }).merges.trim().split('\n').length).toBeGreaterThan(5);
  });

  it('round-trips through a tokenizer folder', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpe-'));
    try {
      const files = trainClipBpe(corpus);
      await saveClipTokenizerFiles(dir, files);
      const loaded = await CLIPTokenizer.fromPretrained(dir);
      expect(loaded.encode('two red squares')).toEqual(CLIPTokenizer.fromFiles(files).encode('two red squares'));
      expect(loaded.modelMaxLength).toBe(77);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad options and an empty corpus', () => {
    expect(() => trainClipBpe(corpus, { vocabSize: 100 })).toThrow(/vocabSize must be an integer ≥ 514/);
    expect(() => trainClipBpe(corpus, { minFrequency: 0 })).toThrow(/minFrequency/);
    expect(() => trainClipBpe(['', '  '])).toThrow(/no words/);
    expect(() => trainClipBpe([3 as unknown as string])).toThrow(/texts\[0\] is number/);
  });
});
