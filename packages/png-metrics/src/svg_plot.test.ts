import { PngEvaluator, type PngSample } from './evaluator';
import { buildReport } from './report';
import { SvgMarkup, escapeXml, renderRecallCurvePanelsSvg, renderRecallCurvesSvg, svgDocument, svgElement } from './svg_plot';

/** Checks that every tag is closed in order (a tiny well-formedness test; no XML parser is available). */
function expectWellFormed(xml: string): void {
  const stack: string[] = [];
  for (const [, closing, name, selfClosing] of xml.replace(/<\?xml[^>]*\?>/, '').matchAll(/<(\/?)([A-Za-z_][\w.:-]*)(?:\s[^<>]*?)?(\/?)>/g)) {
    if (closing) expect(stack.pop()).toBe(name);
    else if (!selfClosing) stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(xml.replace(/<[^<>]*>/g, '')).not.toMatch(/[<>]/); // no stray brackets in text
}

describe('SVG writer', () => {
  test('elements, attributes and escaping', () => {
    expect(svgElement('rect', { x: 1.23456, y: 0, fill: 'none' }).xml).toBe('<rect x="1.23" y="0" fill="none"/>');
    expect(svgElement('text', { x: 1 }, 'a < b & "c"').xml).toBe('<text x="1">a &#60; b &#38; &#34;c&#34;</text>');
    expect(svgElement('g', {}, svgElement('line'), 'x').xml).toBe('<g><line/>x</g>');
    expect(svgElement('text', { title: `it's <b>` }).xml).toBe('<text title="it&#39;s &#60;b&#62;"/>');
    expect(escapeXml('<&>')).toBe('&#60;&#38;&#62;');
    expect(new SvgMarkup('<x/>').xml).toBe('<x/>');
  });

  test('invalid names and non-finite numbers are rejected', () => {
    expect(() => svgElement('a b')).toThrow(/element name/);
    expect(() => svgElement('g', { 'on"click': 1 })).toThrow(/attribute name/);
    expect(() => svgElement('g', { x: NaN })).toThrow(/finite/);
  });

  test('document', () => {
    const doc = svgDocument(10, 20, svgElement('rect', { width: 1, height: 1 }));
    expect(doc.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20" viewBox="0 0 10 20">')).toBe(
      true,
    );
    expectWellFormed(doc);
  });
});

describe('recall-curve figure', () => {
  const phrase = (isThing: boolean, isPlural: boolean, gt: number[]) => ({ label: 'p', isThing, isPlural, mask: Uint8Array.from(gt) });
  const sample: PngSample = {
    label: 's',
    height: 1,
    width: 4,
    phrases: [phrase(true, false, [1, 1, 0, 0]), phrase(false, false, [0, 1, 1, 1]), phrase(true, false, [1, 0, 0, 0])],
  };
  const evaluator = new PngEvaluator();
  evaluator.process(sample, [Uint8Array.from([1, 0, 0, 0]), Uint8Array.from([0, 1, 1, 1]), Uint8Array.from([1, 1, 1, 1])]);
  const svg = renderRecallCurvesSvg(buildReport(evaluator.evaluate()));

  test('three panels in the Figure 4 layout, one curve per non-empty group, empty groups listed', () => {
    expectWellFormed(svg);
    expect(svg.match(/<g transform=/g)).toHaveLength(3);
    for (const title of ['Overall', 'Things vs stuff', 'Singulars vs plurals']) expect(svg).toContain(`>${title}</text>`);
    expect(svg.match(/<polyline /g)).toHaveLength(4); // plurals is empty
    expect(svg).toContain('plurals: no phrases (AR nan)');
    expect(svg).toMatch(/things: AR \d+\.\d \(n = 2\)/);
    const points = svg.match(/<polyline points="([^"]*)"/)?.[1].split(' ');
    expect(points).toHaveLength(1001);
  });
});

describe('recall-curve panels', () => {
  const thresholds = [0, 0.5, 1];
  const panel = (title: string) => ({
    title,
    thresholds,
    series: [
      { legend: 'static: AR 40.0', recall: [1, 0.5, 0] },
      { legend: 'full: AR 50.0', recall: [1, 0.6, 0.1], color: '#123456' },
      { legend: 'mlma: not run', recall: null },
    ],
  });

  test('panels in rows of `columns`, one polyline per series with recall, legends for all', () => {
    const svg = renderRecallCurvePanelsSvg(['A', 'B', 'C', 'D', 'E'].map(panel), { columns: 3 });
    expectWellFormed(svg);
    expect(svg).toContain('width="1080" height="680"'); // 3 columns × 2 rows of 360 × 340
    expect(svg).toContain('<g transform="translate(720 0)">');
    expect(svg).toContain('<g transform="translate(360 340)">');
    expect(svg).not.toContain('translate(720 340)'); // five panels: the second row has two
    expect(svg.match(/<polyline /g)).toHaveLength(10);
    expect(svg.match(/>mlma: not run<\/text>/g)).toHaveLength(5);
    expect(svg).toContain('stroke="#123456"');
    expect(svg).toContain('stroke="#222222"'); // the first default colour
    // recall 0.5 at threshold 0.5: x = 56 + 0.5·260, y = 36 + 0.5·260
    expect(svg).toContain('points="56,36 186,166 316,296"');
  });

  test('a series whose recall does not match the thresholds is refused, naming it', () => {
    const bad = { title: 'Overall', thresholds, series: [{ legend: 'full', recall: [1, 0.5] }] };
    expect(() => renderRecallCurvePanelsSvg([bad])).toThrow("panel 'Overall', series 'full': 2 recall values for 3 thresholds");
    expect(() => renderRecallCurvePanelsSvg([bad], { columns: 0 })).toThrow(/columns/);
  });
});
