import { check, isFiniteNumber, isNonNegativeInt, isPositiveInt, resolveConfig } from '@png/core';

/** A learning rate per optimizer step (0-based: the number of updates applied before this one). */
export type LrSchedule = (step: number) => number;

/** Configuration of `warmupPoly`. */
export interface WarmupPolyConfig {
  /** Peak learning rate, reached at the end of warm-up. */
  readonly base_lr: number;
  /** Length of the linear warm-up, in optimizer steps (0: none). */
  readonly warmup_steps: number;
  /** Length of the whole run, in optimizer steps; the rate reaches 0 there. */
  readonly total_steps: number;
  /** Exponent of the polynomial decay (detectron2's POLY_LR_POWER). */
  readonly power: number;
  /** Warm-up starts at base_lr · warmup_start_factor (detectron2's WARMUP_FACTOR). */
  readonly warmup_start_factor: number;
}

export const DEFAULT_WARMUP_POLY_CONFIG = Object.freeze({ power: 0.9, warmup_start_factor: 0.001 });

function validate(c: WarmupPolyConfig): void {
  const name = 'WarmupPolyConfig';
  check(isFiniteNumber(c.base_lr) && c.base_lr > 0, name, 'base_lr', 'a finite number > 0', c.base_lr);
  check(isNonNegativeInt(c.warmup_steps), name, 'warmup_steps', 'an integer ≥ 0', c.warmup_steps);
  check(isPositiveInt(c.total_steps) && c.total_steps > c.warmup_steps, name, 'total_steps', `an integer > warmup_steps (${c.warmup_steps})`, c.total_steps);
  check(isFiniteNumber(c.power) && c.power > 0, name, 'power', 'a finite number > 0', c.power);
  check(
    isFiniteNumber(c.warmup_start_factor) && c.warmup_start_factor > 0 && c.warmup_start_factor <= 1,
    name,
    'warmup_start_factor',
    'a number in (0, 1]',
    c.warmup_start_factor,
  );
}

/**
 * Linear warm-up then polynomial decay, the "WarmupPolyLR" of detectron2 / Mask2Former:
 *
 *     step < warmup:  lr = base · (f + (1 − f) · step / warmup)                    f = warmup_start_factor
 *     otherwise:      lr = base · (1 − (step − warmup) / (total − warmup))^power   (0 from total on)
 *
 * Difference from detectron2: detectron2 multiplies the warm-up factor into a poly curve that
 * spans the whole run (so the peak is slightly below base_lr); here the decay spans the steps
 * after warm-up, so the rate is exactly base_lr when warm-up ends. With warmup_steps = 0 the two
 * are identical. `step` is 0-based (the number of updates already applied). The config is
 * validated when the schedule is made (`Error in WarmupPolyConfig.<field>: …`).
 */
export function warmupPoly(config: Pick<WarmupPolyConfig, 'base_lr' | 'warmup_steps' | 'total_steps'> & Partial<WarmupPolyConfig>): LrSchedule {
  // The required fields default to null, which resolveConfig's type check skips; validate() checks them.
  const c = resolveConfig<WarmupPolyConfig>(
    'WarmupPolyConfig',
    { base_lr: null, warmup_steps: null, total_steps: null, ...DEFAULT_WARMUP_POLY_CONFIG } as unknown as WarmupPolyConfig,
    config,
    validate,
  );
  const { base_lr: base, warmup_steps: warmup, total_steps: total, power, warmup_start_factor: f } = c;
  return (step: number): number => {
    if (!(isFiniteNumber(step) && step >= 0)) throw new Error(`warmupPoly: step must be a finite number ≥ 0, got ${step}`);
    if (step < warmup) return base * (f + ((1 - f) * step) / warmup);
    if (step >= total) return 0;
    return base * (1 - (step - warmup) / (total - warmup)) ** power;
  };
}
