import { warmupPoly } from './lr_schedule';

describe('warmupPoly', () => {
  const lr = warmupPoly({ base_lr: 1e-4, warmup_steps: 100, total_steps: 1100 });

  it('warms up linearly from base·0.001 to base', () => {
    expect(lr(0)).toBeCloseTo(1e-7, 15);
    expect(lr(50)).toBeCloseTo(1e-4 * (0.001 + 0.999 * 0.5), 15);
    expect(lr(99)).toBeCloseTo(1e-4 * (0.001 + 0.999 * 0.99), 15);
    expect(lr(100)).toBe(1e-4);
  });

  it('then decays as (1 − progress)^0.9 to 0 at total_steps, and stays 0', () => {
    expect(lr(600)).toBeCloseTo(1e-4 * 0.5 ** 0.9, 15);
    expect(lr(1099)).toBeCloseTo(1e-4 * 0.001 ** 0.9, 15);
    expect(lr(1100)).toBe(0);
    expect(lr(5000)).toBe(0);
    for (let s = 101; s <= 1100; s += 37) expect(lr(s)).toBeLessThan(lr(s - 1));
  });

  it('without warm-up is detectron2 WarmupPolyLR with its own power', () => {
    const noWarmup = warmupPoly({ base_lr: 2, warmup_steps: 0, total_steps: 10, power: 2 });
    for (const [i, want] of [2, 0.5, 0.02, 0].entries()) expect(noWarmup([0, 5, 9, 10][i])).toBeCloseTo(want, 14);
  });

  it('rejects bad configs and bad steps with clear errors', () => {
    expect(() => warmupPoly({ base_lr: 1e-4, warmup_steps: 10, total_steps: 10 })).toThrow(
      'Error in WarmupPolyConfig.total_steps: expected an integer > warmup_steps (10), got 10',
    );
    expect(() => warmupPoly({ base_lr: -1, warmup_steps: 0, total_steps: 10 })).toThrow('Error in WarmupPolyConfig.base_lr');
    expect(() => warmupPoly({ base_lr: 1, warmup_steps: 1.5, total_steps: 10 })).toThrow('Error in WarmupPolyConfig.warmup_steps');
    expect(() => warmupPoly({ base_lr: 1, warmup_steps: 0, total_steps: 10, warmup_start_factor: 0 })).toThrow('Error in WarmupPolyConfig.warmup_start_factor');
    expect(() => warmupPoly({ base_lr: 1, warmup_steps: 0, total_steps: 10, powr: 1 } as never)).toThrow("did you mean 'power'?");
    expect(() => lr(-1)).toThrow('step must be a finite number ≥ 0, got -1');
  });
});
