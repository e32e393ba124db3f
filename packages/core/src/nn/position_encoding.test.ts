import { positionEmbeddingSineTable } from './position_encoding';
import { maxAbsDiff } from '../testing';

describe('PositionEmbeddingSine', () => {
  it('follows Mask2Former (normalize=True, y then x, interleaved sin/cos)', () => {
    const t = positionEmbeddingSineTable(2, 4, 4); // [8, 8]
    const e = 1e-6;
    const ey = (y: number) => ((y + 1) / (2 + e)) * 2 * Math.PI;
    const ex = (x: number) => ((x + 1) / (4 + e)) * 2 * Math.PI;
    const d2 = 10000 ** (2 / 4);
    const token = 1 * 4 + 2; // y = 1, x = 2
    const expected = [
      Math.sin(ey(1)),
      Math.cos(ey(1)),
      Math.sin(ey(1) / d2),
      Math.cos(ey(1) / d2),
      Math.sin(ex(2)),
      Math.cos(ex(2)),
      Math.sin(ex(2) / d2),
      Math.cos(ex(2) / d2),
    ];
    expect(maxAbsDiff(t.slice(token * 8, token * 8 + 8), expected)).toBeLessThan(1e-6);
  });
});
