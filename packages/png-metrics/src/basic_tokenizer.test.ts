import { basicTokenize } from './basic_tokenizer';

/** Words only; every expectation below is what BERT's BasicTokenizer(do_lower_case=True) gives (checked with Python). */
const words = (text: string): string[] => basicTokenize(text).map((t) => t.text);

describe('basicTokenize (BERT basic tokenisation)', () => {
  test('the caption of the real record quoted in PPMN pre_process.py', () => {
    expect(words('In this picture we can able to see a black bear on this tree.')).toEqual([
      'in',
      'this',
      'picture',
      'we',
      'can',
      'able',
      'to',
      'see',
      'a',
      'black',
      'bear',
      'on',
      'this',
      'tree',
      '.',
    ]);
  });

  test('lower-cases, strips accents and splits every punctuation character off', () => {
    expect(words('a  café   with naïve décor')).toEqual(['a', 'cafe', 'with', 'naive', 'decor']);
    expect(words('Hello,world!!')).toEqual(['hello', ',', 'world', '!', '!']);
    expect(words("I CAN'T")).toEqual(['i', 'can', "'", 't']);
    expect(words('$5^2`x')).toEqual(['$', '5', '^', '2', '`', 'x']);
    expect(words('İstanbul')).toEqual(['istanbul']);
    expect(words('e\u0301\u0301 \u0301')).toEqual(['e']); // a piece of combining marks only vanishes
  });

  test('lower-cases a piece as a whole (final sigma)', () => {
    expect(words('ΑΣ ΣΑΣ')).toEqual(['ας', 'σας']);
  });

  test('removes control characters, splits at every white space and around CJK ideographs', () => {
    expect(words('x\u0000y\ufffdz a\u200bb')).toEqual(['xyz', 'ab']);
    expect(words('a\u2028b\u3000c\td\ne')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(words('中文字 mixed')).toEqual(['中', '文', '字', 'mixed']);
  });

  test('leaves the special tokens whole, only when they are a piece of their own', () => {
    expect(words('[MASK] [mask] [UNK].')).toEqual(['[MASK]', '[', 'mask', ']', '[', 'unk', ']', '.']);
  });

  test('keeps the character range of every word in the input', () => {
    const text = ' Ça  va, İzmir?\u0000x 中';
    const tokens = basicTokenize(text);
    expect(tokens.map((t) => [t.text, text.slice(t.start, t.end)])).toEqual([
      ['ca', 'Ça'],
      ['va', 'va'],
      [',', ','],
      ['izmir', 'İzmir'],
      ['?', '?'],
      ['x', 'x'],
      ['中', '中'],
    ]);
    // A removed control character inside a word stays inside its range.
    expect(basicTokenize('ab\u0000cd')).toEqual([{ text: 'abcd', start: 0, end: 5 }]);
    // Astral code points: UTF-16 offsets.
    expect(basicTokenize('\u{20001}x 😀!')).toEqual([
      { text: '\u{20001}', start: 0, end: 2 },
      { text: 'x', start: 2, end: 3 },
      { text: '😀', start: 4, end: 6 },
      { text: '!', start: 6, end: 7 },
    ]);
  });

  test('an empty or blank text has no word', () => {
    expect(basicTokenize('')).toEqual([]);
    expect(basicTokenize(' \t\u00a0\u0000')).toEqual([]);
  });
});
