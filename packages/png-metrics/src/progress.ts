/** A one-line text progress bar, redrawn in place with `\r` whenever the whole percentage changes. */
export interface ProgressBar {
  update(done: number): void;
  /** Draws the final state and ends the line. */
  finish(): void;
}

const BAR_WIDTH = 30;

/** A progress bar written to `stream` (meant for stderr) for `total` units of work. */
export function createProgressBar(stream: { write(text: string): unknown }, total: number, label: string): ProgressBar {
  let shownPercent = -1;
  let last = 0;
  const draw = (done: number) => {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}% ${done}/${total}`);
  };
  return {
    update(done: number) {
      last = done;
      const percent = total > 0 ? Math.floor((100 * done) / total) : 100;
      if (percent !== shownPercent) {
        shownPercent = percent;
        draw(done);
      }
    },
    finish() {
      draw(last);
      stream.write('\n');
    },
  };
}
