import { PngEvaluator, type PngSample } from './evaluator';
import { maskIoU } from './iou';
import { encodeRle } from './rle';

const bits = (text: string) => Uint8Array.from(text.replace(/\s/g, ''), (c) => Number(c));

describe('maskIoU', () => {
  test('binary masks: IoU is float32(I / U) (example 2: 3/10)', () => {
    const gt = bits('1111 1111 1100 0000');
    const pred = bits('1110 0000 0000 0000');
    const iou = maskIoU(pred, gt);
    expect(iou).toBe(Math.fround(3 / 10));
    expect(iou).toBe(0.30000001192092896);
    expect(iou).not.toBe(0.3); // the float64 value would miss threshold t_30000
    expect(iou >= 30000 * 1e-5).toBe(true);
    expect(0.3 >= 30000 * 1e-5).toBe(false);
  });

  test('any non-zero byte of a binary mask is foreground', () => {
    expect(maskIoU(Uint8Array.from([255, 0, 7]), Uint8Array.from([1, 0, 1]))).toBe(1);
  });

  test('empty ∪ empty is NaN; empty prediction vs non-empty GT is 0', () => {
    expect(maskIoU(new Uint8Array(4), new Uint8Array(4))).toBeNaN();
    expect(maskIoU(new Float32Array(4), new Float32Array(4))).toBeNaN();
    expect(maskIoU(new Uint8Array(4), bits('0110'))).toBe(0);
  });

  test('soft masks: float32 rounding after every elementwise op and of the sums', () => {
    // example 3: pred = row 0, GT row0 = [1, 1, .5, .25], row1 = [.5, .5, 0, 0] → 2.75 / 5
    const pred = bits('1111 0000 0000 0000');
    const gt = Float32Array.from([1, 1, 0.5, 0.25, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(maskIoU(pred, gt)).toBe(0.550000011920929);

    // values that are not exact in float32: each product and union term is rounded first
    const p = Float32Array.from([0.1, 0.7, 0.3]);
    const t = Float32Array.from([0.9, 0.2, 0.6]);
    let intersection = 0;
    let union = 0;
    for (let k = 0; k < 3; k++) {
      const pt = Math.fround(p[k] * t[k]);
      intersection += pt;
      union += Math.fround(Math.fround(p[k] + t[k]) - pt);
    }
    const expected = Math.fround(Math.fround(intersection) / Math.fround(union));
    expect(maskIoU(p, t)).toBe(expected);
    expect(Math.fround(maskIoU(p, t))).toBe(maskIoU(p, t)); // a float32 value
    // the same computation without float32 rounding gives other bits
    const exact = (0.1 * 0.9 + 0.7 * 0.2 + 0.3 * 0.6) / (0.1 + 0.9 - 0.09 + 0.7 + 0.2 - 0.14 + 0.3 + 0.6 - 0.18);
    expect(maskIoU(p, t)).not.toBe(exact);
  });

  test('masks of different lengths are an error', () => {
    expect(() => maskIoU(new Uint8Array(4), new Uint8Array(5))).toThrow(/4 pixels but ground truth has 5/);
  });
});

describe('prediction size checks in PngEvaluator.process', () => {
  const sample: PngSample = {
    label: 'record 3 (image 397133)',
    height: 2,
    width: 3,
    phrases: [{ label: 'record 3 (image 397133), phrase 0 "two dogs"', isThing: true, isPlural: true, mask: bits('110 011') }],
  };

  test('a typed-array prediction of the wrong size names the phrase', () => {
    expect(() => new PngEvaluator().process(sample, [new Uint8Array(5)])).toThrow(/phrase 0 "two dogs".*5 pixels.*2×3/);
  });

  test('an RLE prediction of the wrong size names the phrase', () => {
    const rle = encodeRle(new Uint8Array(6), 3, 2);
    expect(() => new PngEvaluator().process(sample, [rle])).toThrow(/phrase 0 "two dogs".*\[3,2\].*\[2, 3\]/);
  });

  test('a malformed RLE names the phrase', () => {
    expect(() => new PngEvaluator().process(sample, [{ size: [2, 3], counts: [1, 2] }])).toThrow(/phrase 0 "two dogs".*cover 3 pixels/);
  });

  test('the wrong number of predictions names the sample and leaves the state unchanged', () => {
    const evaluator = new PngEvaluator();
    expect(() => evaluator.process(sample, [])).toThrow(/record 3 \(image 397133\): got 0 predicted masks for 1 phrases/);
    expect(evaluator.phraseCount).toBe(0);
  });

  test('binary, soft and RLE predictions of the same mask give the same IoU', () => {
    const evaluator = new PngEvaluator();
    const mask = bits('100 011');
    evaluator.process(sample, [mask]);
    evaluator.process(sample, [Float32Array.from(mask)]);
    evaluator.process(sample, [encodeRle(mask, 2, 3)]);
    evaluator.process(sample, [encodeRle(mask, 2, 3, { compressed: false })]);
    const ious = evaluator.toJSON().ious;
    expect(ious).toEqual([0.75, 0.75, 0.75, 0.75]); // I = 3, U = 4
  });
});
