import { AlignedText } from './aligned_text';
import { fixText } from './ftfy';

const fix = (s: string) => fixText(AlignedText.from(s));

describe('fixText (ftfy 6.1 fix_text subset)', () => {
  // Expected strings are the output of ftfy 6.1.1 `fix_text` on the same inputs.
  it.each([
    ['a dog’s “quoted” text', 'a dog\'s "quoted" text'],
    ['fish &amp; chips', 'fish & chips'],
    ['fish &amp;amp; chips', 'fish & chips'], // fixes repeat until nothing changes
    ['Ｆｕｌｌｗｉｄｔｈ\u3000ｶﾞｷ', 'Fullwidth ガキ'],
    ['ﬁne ﬂour ﬃ Ĳssel', 'fine flour ffi IJssel'],
    ['e\u0301te\u0301 \u1100\u1161\u11a8', 'été 각'],
    ['&lt;b&gt; &eacute;&EACUTE;&NOTIN;&hellip; &#x2019;&#8217;&#128;&#0;&#1;&#x110000;&#12ab;&bogus;', "<b> éÉ∉… ''€\ufffd\ufffd&#12ab;&bogus;"],
    ['a < b &amp; c', 'a < b &amp; c'], // a '<' means HTML: entities stay
    ['line1 &amp;\nline2 <tag> &amp;\nline3 &amp;', 'line1 &\nline2 <tag> &amp;\nline3 &amp;'], // …from that line on
    ['x\x85y \x9d', 'x…y \x9d'],
    ['\x1b[31mred\x1b[0m \x07bell\ufeff', 'red bell'],
    ['cr\r\nlf\rls\u2028ps\u2029', 'cr\nlf\nls\nps\n'],
    ['ʼapostrophe‛ „low‟', '\'apostrophe\' "low"'],
    ['&nbsp;&NBSP;', '\u00a0\u00a0'],
  ])('%j', (input, expected) => {
    expect(fix(input).text).toBe(expected);
  });

  it('maps every output character back to the characters it came from', () => {
    const amp = fix('fish &amp; chips');
    expect(amp.span(5, 6)).toEqual([5, 10]); // '&' ← '&amp;'
    expect(amp.span(7, 8)).toEqual([11, 12]); // 'c' of chips
    const wide = fix('ＡＢ');
    expect([wide.span(0, 1), wide.span(1, 2)]).toEqual([
      [0, 1],
      [1, 2],
    ]);
    const nfc = fix('xe\u0301y');
    expect(nfc.text).toBe('xéy');
    expect([nfc.span(0, 1), nfc.span(1, 2), nfc.span(2, 3)]).toEqual([
      [0, 1],
      [1, 3],
      [3, 4],
    ]);
    const removed = fix('a\x07b');
    expect(removed.text).toBe('ab');
    expect(removed.span(1, 2)).toEqual([2, 3]);
  });

  it('lower-cases like Python str.lower, keeping offsets', () => {
    const t = AlignedText.from('İx ΣΑΣ').lower();
    expect(t.text).toBe('i\u0307x σας'); // full case mapping and final sigma
    expect([t.span(0, 1), t.span(1, 2), t.span(2, 3)]).toEqual([
      [0, 1],
      [0, 1],
      [1, 2],
    ]);
  });
});
