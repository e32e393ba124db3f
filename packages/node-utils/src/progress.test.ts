import { createProgressBar, formatDuration } from './progress';

function recorder(): { write(t: string): void; text: string } {
  return {
    text: '',
    write(t: string) {
      this.text += t;
    },
  };
}

describe('createProgressBar', () => {
  it('shows counts, elapsed time, an ETA from this run’s rate, and the detail', () => {
    let t = 0;
    const out = recorder();
    const bar = createProgressBar(out, 10, 'train', { start: 2, now: () => t });
    t = 4000;
    bar.update(4, 'loss 0.500');
    // 2 units in 4 s → 2 s each → 6 left = 12 s
    expect(out.text).toBe('\rtrain [############------------------]  40% 4/10 0:04 ETA 0:12 loss 0.500');
    t = 4100;
    bar.update(4, 'loss 0.400'); // same percent, detail changed, but within the redraw interval
    expect(out.text.split('\r')).toHaveLength(2);
    t = 20000;
    bar.update(10, 'loss 0.100');
    bar.finish();
    expect(out.text).toMatch(/\rtrain \[#{30}\] 100% 10\/10 0:20 loss 0\.100\n$/);
  });

  it('blanks out what a longer previous line left, and has no ETA before the first unit', () => {
    let t = 0;
    const out = recorder();
    const bar = createProgressBar(out, 0 + 200, 'x', { now: () => t });
    bar.update(0, 'a long detail text');
    expect(out.text).toContain('ETA --:--');
    t = 1000;
    bar.update(100);
    const lines = out.text.split('\r').slice(1);
    expect(lines[1].length).toBe(lines[0].length);
  });

  it('formats durations', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(61_400)).toBe('1:01');
    expect(formatDuration(3_725_000)).toBe('1:02:05');
  });
});
