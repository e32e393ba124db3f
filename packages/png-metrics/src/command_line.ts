/** The `png-metrics` command line: `evaluate` (predictions vs the benchmark GT) and `ar` (phrase-masks file). */
import { basename } from 'node:path';
import { createProgressBar, writeFileAtomic } from '@png/node-utils';
import { RECALL_GRID_SIZE } from './average_recall';
import { COCO_SIZE_THRESHOLDS, DEFAULT_GROUP_BY, PngEvaluator, parseSizeThresholds, type PngEvaluateOptions } from './evaluator';
import { PngGroundTruth } from './gt';
import { readJsonFile } from './json_input';
import { parseMaskPhrases } from './mask_phrases';
import { evaluatePredictions, parsePredictions } from './predictions';
import { describeDrops } from './pre_process';
import { buildReport, formatMetricsTable, summarizeMetrics } from './report';
import { renderRecallCurvesSvg } from './svg_plot';

/** Where the command line writes. `stderr.isTTY` turns the progress bar on. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

class UsageError extends Error {}

const OUTPUT_OPTIONS = `Groups:
  --group-by KEYS     comma-separated tag keys (extra string keys of the png_coco chunks) whose
                      values form groups (default ${DEFAULT_GROUP_BY.join(',')}); keys no phrase has add nothing
  --size-thresholds S,M
                      GT area bounds in pixels: small < S <= medium < M <= large
                      (default ${COCO_SIZE_THRESHOLDS.join(',')}, COCO's 32² and 96²; use smaller ones for small images)
  --bootstrap N       resamples of the images for the AR intervals (default 1000; 0: no intervals)
  --seed S            seed of the resampling (default 0)
  --confidence C      coverage of the percentile intervals (default 0.95)
Output:
  --json              print {"overall", "things", "stuff", "singulars", "plurals"} as full-precision
                      numbers (null for an empty group), with "counts" and "accuracy_at_0_5", then
                      "average_recall_ci", "by_size", "size_thresholds", "by_tag" and "bootstrap"
  --report FILE       write the JSON report (AR, counts, acc@0.5, the size and tag groups, the
                      intervals, recall curves downsampled to --curve-points thresholds, default
                      1001); written atomically
  --curve-points N    thresholds kept per curve in the report and plot (2..100000)
  --plot FILE         write the recall-vs-IoU figure as SVG (overall; things vs stuff;
                      singulars vs plurals); written atomically
  -h, --help          show this help
Without --json the table shows AR and acc@0.5 x100 with one decimal, "nan" for empty groups, and
the interval of the AR.`;

const HELP: Record<string, string> = {
  main: `Usage: png-metrics <command> [options]

Panoptic Narrative Grounding metrics (official float32 IoU and Average Recall).

Commands:
  evaluate   score a predictions file against the PNG ground truth
  ar         score the phrases of a phrase-masks file (pred/gt masks given inline)

Run "png-metrics <command> --help" for the options of a command.`,
  evaluate: `Usage: png-metrics evaluate --gt DIR --pred FILE [--split val2017] [options]

Scores predicted masks against the PNG ground truth with the clean protocol: binary prediction
vs binary GT (union of the phrase's panoptic segments) at the original image size.

Input:
  --gt DIR            folder with png_coco_<split>.json, panoptic_<split>.json and
                      panoptic_segmentation/<split>/<image_id:012d>.png
  --split NAME        split name (default val2017)
  --pred FILE         predictions JSON: [{"record_index", "image_id", "phrases":
                      [{"segment_ids": [...], "rle": {"size": [h, w], "counts"}}]}]
                      (see the package README)
  --progress          show a progress bar on stderr (default: only when stderr is a terminal)
${OUTPUT_OPTIONS}`,
  ar: `Usage: png-metrics ar PHRASES.json [options]

Scores the phrases of a phrase-masks file: {"phrases": [{"name", "pred": [[...]], "gt": [[...]],
"isThing", "isPlural"}]}, masks given as rows (0/1 = binary, any other value = soft). Each
phrase is an image of its own for the bootstrap.

${OUTPUT_OPTIONS}`,
};

interface ParsedArgs {
  values: Map<string, string>;
  flags: Set<string>;
  positionals: string[];
}

function parseArgs(args: readonly string[], valueOptions: readonly string[], flagOptions: readonly string[], command: string): ParsedArgs {
  const parsed: ParsedArgs = { values: new Map(), flags: new Set(), positionals: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('-') || arg === '-') {
      parsed.positionals.push(arg);
      continue;
    }
    const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flagOptions.includes(name) && inline === undefined) {
      parsed.flags.add(name);
    } else if (valueOptions.includes(name)) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value; see "png-metrics ${command} --help"`);
      parsed.values.set(name, value);
    } else {
      throw new UsageError(`unknown option ${arg} for "${command}"; see "png-metrics ${command} --help"`);
    }
  }
  return parsed;
}

const OUTPUT_VALUES = ['--report', '--plot', '--curve-points', '--group-by', '--size-thresholds', '--bootstrap', '--seed', '--confidence'];
const OUTPUT_FLAGS = ['--json', '--help', '-h'];

function required(args: ParsedArgs, name: string, command: string): string {
  const value = args.values.get(name);
  if (value === undefined) throw new UsageError(`${name} is required; see "png-metrics ${command} --help"`);
  return value;
}

/** The groups and bootstrap asked for on the command line. */
function evaluateOptions(args: ParsedArgs): PngEvaluateOptions {
  const groupBy = args.values
    .get('--group-by')
    ?.split(',')
    .map((key) => key.trim());
  if (groupBy?.some((key) => key === '')) throw new UsageError(`--group-by takes comma-separated tag keys, got "${args.values.get('--group-by')}"`);
  const thresholdsText = args.values.get('--size-thresholds');
  let sizeThresholds: [number, number] | undefined;
  try {
    sizeThresholds = thresholdsText === undefined ? undefined : parseSizeThresholds(thresholdsText);
  } catch (e) {
    throw new UsageError(`--size-thresholds: ${(e as Error).message}`);
  }
  const integer = (name: string, fallback: number, min: number): number => {
    const text = args.values.get(name);
    if (text === undefined) return fallback;
    if (!/^-?\d+$/.test(text) || Number(text) < min) throw new UsageError(`${name} must be an integer >= ${min}, got ${text}`);
    return Number(text);
  };
  const resamples = integer('--bootstrap', 1000, 0);
  const seed = integer('--seed', 0, -(2 ** 31));
  const confidenceText = args.values.get('--confidence') ?? '0.95';
  const confidence = Number(confidenceText);
  if (!(confidence > 0 && confidence < 1)) throw new UsageError(`--confidence must be a number in (0, 1), e.g. 0.95, got ${confidenceText}`);
  return { groupBy, sizeThresholds, ...(resamples > 0 ? { bootstrap: { resamples, seed, confidence } } : {}) };
}

function writeOutputs(evaluator: PngEvaluator, options: PngEvaluateOptions, args: ParsedArgs, io: CliIo): void {
  const pointsText = args.values.get('--curve-points') ?? '1001';
  const points = /^\d+$/.test(pointsText) ? Number(pointsText) : NaN;
  if (!(points >= 2 && points <= RECALL_GRID_SIZE)) throw new UsageError(`--curve-points must be an integer in 2..${RECALL_GRID_SIZE}, got ${pointsText}`);
  const metrics = evaluator.evaluate(options);
  const reportPath = args.values.get('--report');
  const plotPath = args.values.get('--plot');
  if (reportPath !== undefined || plotPath !== undefined) {
    const report = buildReport(metrics, points);
    if (reportPath !== undefined) writeFileAtomic(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    if (plotPath !== undefined) writeFileAtomic(plotPath, renderRecallCurvesSvg(report));
  }
  io.stdout.write(args.flags.has('--json') ? `${JSON.stringify(summarizeMetrics(metrics))}\n` : formatMetricsTable(metrics));
}

function runEvaluate(argv: readonly string[], io: CliIo): void {
  const args = parseArgs(argv, ['--gt', '--split', '--pred', ...OUTPUT_VALUES], ['--progress', ...OUTPUT_FLAGS], 'evaluate');
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}; see "png-metrics evaluate --help"`);
  const gtDir = required(args, '--gt', 'evaluate');
  const predPath = required(args, '--pred', 'evaluate');
  const options = evaluateOptions(args);
  const gt = PngGroundTruth.load(gtDir, args.values.get('--split') ?? 'val2017');
  if (gt.dropped.length > 0) io.stderr.write(`${describeDrops(gt.dropped)}\n`);
  const predictions = parsePredictions(readJsonFile(predPath, 'predictions file'), basename(predPath));
  const bar = args.flags.has('--progress') || io.stderr.isTTY === true ? createProgressBar(io.stderr, gt.phraseCount, 'phrases') : undefined;
  const evaluator = evaluatePredictions(gt, predictions, { onProgress: bar && ((done) => bar.update(done)) });
  bar?.finish();
  writeOutputs(evaluator, options, args, io);
}

function runAr(argv: readonly string[], io: CliIo): void {
  const args = parseArgs(argv, OUTPUT_VALUES, OUTPUT_FLAGS, 'ar');
  if (args.positionals.length !== 1) throw new UsageError(`expected one phrase-masks file, got ${args.positionals.length}; see "png-metrics ar --help"`);
  const path = args.positionals[0];
  const options = evaluateOptions(args);
  const evaluator = new PngEvaluator();
  for (const { sample, prediction } of parseMaskPhrases(readJsonFile(path, 'phrase-masks file'), basename(path))) {
    evaluator.process(sample, [prediction]);
  }
  writeOutputs(evaluator, options, args, io);
}

const COMMANDS: Record<string, (argv: readonly string[], io: CliIo) => void> = { evaluate: runEvaluate, ar: runAr };

/**
 * Runs the command line with `argv` (without the node and script paths).
 * @returns the exit code: 0 on success, 1 on an input or evaluation error, 2 on a usage error.
 */
export function main(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): number {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? io.stderr : io.stdout).write(`${HELP.main}\n`);
    return command === undefined ? 2 : 0;
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!run) {
    io.stderr.write(`png-metrics: unknown command "${command}"\n\n${HELP.main}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${HELP[command]}\n`);
    return 0;
  }
  try {
    run(rest, io);
    return 0;
  } catch (e) {
    io.stderr.write(`png-metrics ${command}: ${(e as Error).message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
