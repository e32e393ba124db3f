/** A one-line text progress bar with the elapsed time and an ETA, redrawn in place with `\r`. */
export interface ProgressBar {
  /** `done` units finished; `detail` (e.g. `loss 0.412`) is shown after the counts. */
  update(done: number, detail?: string): void;
  /** Draws the final state and ends the line. */
  finish(): void;
}

const BAR_WIDTH = 30;
/** A changed detail is redrawn at most this often; a new whole percentage always is. */
const REDRAW_MS = 200;

/** `m:ss`, or `h:mm:ss` from an hour on. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const two = (n: number) => String(n).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`;
}

/**
 * A progress bar written to `stream` (meant for stderr) for `total` units of work:
 * `label [####------]  40% 4/10 0:12 ETA 0:18 loss 0.41`. `start` is the count already done when
 * the bar appears (a resumed run), so the ETA uses only this run's rate. `now` is for tests.
 */
export function createProgressBar(
  stream: { write(text: string): unknown },
  total: number,
  label: string,
  options: { start?: number; now?: () => number } = {},
): ProgressBar {
  const now = options.now ?? (() => performance.now());
  const start = options.start ?? 0;
  const began = now();
  let shownPercent = -1;
  let shownAt = -Infinity;
  let last = start;
  let lastDetail: string | undefined;
  let width = 0;
  const draw = (done: number, detail: string | undefined) => {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const elapsed = now() - began;
    const rate = done > start ? elapsed / (done - start) : NaN;
    const eta = done >= total ? '' : Number.isFinite(rate) ? ` ETA ${formatDuration(rate * (total - done))}` : ' ETA --:--';
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}% ${done}/${total} ${formatDuration(elapsed)}${eta}${detail ? ` ${detail}` : ''}`;
    stream.write(`\r${line}${' '.repeat(Math.max(0, width - line.length))}`); // blank out a longer previous line
    width = line.length;
    shownAt = now();
  };
  return {
    update(done: number, detail?: string) {
      last = done;
      lastDetail = detail;
      const percent = total > 0 ? Math.floor((100 * done) / total) : 100;
      if (percent !== shownPercent || (detail !== undefined && now() - shownAt >= REDRAW_MS)) {
        shownPercent = percent;
        draw(done, detail);
      }
    },
    finish() {
      draw(last, lastDetail);
      stream.write('\n');
    },
  };
}
