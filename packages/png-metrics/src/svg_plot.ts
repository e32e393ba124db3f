/**
 * A minimal SVG writer (markup is built from escaped parts only) and the recall-vs-IoU figure in
 * the layout of the PNG paper's Figure 4: overall; things vs stuff; singulars vs plurals.
 */
import type { PhraseGroup } from './evaluator';
import { formatPercent, type PngReport } from './report';

/** Escaped SVG/XML markup. Plain strings given as children are treated as text and escaped. */
export class SvgMarkup {
  constructor(readonly xml: string) {}
}

/** Escapes text for use in XML character data or a double-quoted attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function attributeValue(value: string | number): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`SVG attribute value must be finite, got ${value}`);
    return String(Math.round(value * 100) / 100);
  }
  return escapeXml(value);
}

/**
 * One element: `svgElement('text', {x: 1}, 'a < b')` gives `<text x="1">a &#60; b</text>`.
 * Numbers are written with at most two decimals; attribute names must be XML names.
 */
export function svgElement(name: string, attributes: Record<string, string | number> = {}, ...children: (SvgMarkup | string)[]): SvgMarkup {
  const xmlName = /^[A-Za-z_][\w.:-]*$/;
  if (!xmlName.test(name)) throw new Error(`invalid SVG element name ${JSON.stringify(name)}`);
  let open = `<${name}`;
  for (const [key, value] of Object.entries(attributes)) {
    if (!xmlName.test(key)) throw new Error(`invalid SVG attribute name ${JSON.stringify(key)}`);
    open += ` ${key}="${attributeValue(value)}"`;
  }
  if (children.length === 0) return new SvgMarkup(`${open}/>`);
  const body = children.map((child) => (child instanceof SvgMarkup ? child.xml : escapeXml(child))).join('');
  return new SvgMarkup(`${open}>${body}</${name}>`);
}

/** A complete SVG document of the given size. */
export function svgDocument(width: number, height: number, ...children: SvgMarkup[]): string {
  const root = svgElement('svg', { xmlns: 'http://www.w3.org/2000/svg', width, height, viewBox: `0 0 ${width} ${height}` }, ...children);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${root.xml}\n`;
}

const PANELS: { title: string; groups: PhraseGroup[] }[] = [
  { title: 'Overall', groups: ['overall'] },
  { title: 'Things vs stuff', groups: ['things', 'stuff'] },
  { title: 'Singulars vs plurals', groups: ['singulars', 'plurals'] },
];
const COLORS: Record<PhraseGroup, string> = {
  overall: '#222222',
  things: '#1f77b4',
  stuff: '#ff7f0e',
  singulars: '#2ca02c',
  plurals: '#d62728',
};
/** Colours of series given none, by position in their panel. */
const SERIES_COLORS = ['#222222', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf'];
const PANEL = { width: 360, height: 340, left: 56, top: 36, plot: 260 };

/** One curve of a {@link RecallCurvePanel}. */
export interface RecallCurveSeries {
  /** Legend text. */
  legend: string;
  /** Recall at each of the panel's thresholds; null: listed in the legend, not drawn (an empty group). */
  recall: readonly (number | null)[] | null;
  /** Stroke colour (default: a categorical colour by position in the panel). */
  color?: string;
}

/** One panel of recall-vs-IoU-threshold curves sharing the thresholds. */
export interface RecallCurvePanel {
  title: string;
  /** IoU thresholds in [0, 1], ascending. */
  thresholds: readonly number[];
  series: readonly RecallCurveSeries[];
}

/**
 * Recall vs IoU threshold curves of a report as an SVG figure with three panels (overall; things vs
 * stuff; singulars vs plurals). Legends give AR ×100 and phrase counts; empty groups are listed, not drawn.
 */
export function renderRecallCurvesSvg(report: PngReport): string {
  const { thresholds, recall } = report.recall_curves;
  return renderRecallCurvePanelsSvg(
    PANELS.map(({ title, groups }) => ({
      title,
      thresholds,
      series: groups.map((group) => {
        const ar = report.average_recall[group];
        return {
          legend: ar === null ? `${group}: no phrases (AR nan)` : `${group}: AR ${formatPercent(ar)} (n = ${report.counts[group]})`,
          recall: ar === null ? null : recall[group],
          color: COLORS[group],
        };
      }),
    })),
  );
}

/**
 * Panels of recall-vs-IoU curves (e.g. one curve per model of a comparison), `columns` panels per
 * row (default: all in one row). Each panel has its legend in the lower left corner, on a light box
 * drawn over the curves; a series without recall is listed, not drawn.
 */
export function renderRecallCurvePanelsSvg(panels: readonly RecallCurvePanel[], options: { columns?: number } = {}): string {
  const columns = options.columns ?? panels.length;
  if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`columns must be a positive integer, got ${columns}`);
  const rendered = panels.map(({ title, thresholds, series }, p) => {
    const x = (t: number) => PANEL.left + t * PANEL.plot;
    const y = (r: number) => PANEL.top + (1 - r) * PANEL.plot;
    const parts: SvgMarkup[] = [
      svgElement('text', { x: PANEL.left + PANEL.plot / 2, y: PANEL.top - 14, 'text-anchor': 'middle', 'font-weight': 'bold' }, title),
      svgElement('rect', { x: PANEL.left, y: PANEL.top, width: PANEL.plot, height: PANEL.plot, fill: 'none', stroke: '#000000' }),
    ];
    for (let k = 0; k <= 5; k++) {
      const v = k / 5;
      const label = v.toFixed(1);
      parts.push(
        svgElement('line', { x1: x(v), y1: PANEL.top + PANEL.plot, x2: x(v), y2: PANEL.top + PANEL.plot + 4, stroke: '#000000' }),
        svgElement('text', { x: x(v), y: PANEL.top + PANEL.plot + 16, 'text-anchor': 'middle' }, label),
        svgElement('line', { x1: PANEL.left - 4, y1: y(v), x2: PANEL.left, y2: y(v), stroke: '#000000' }),
        svgElement('text', { x: PANEL.left - 7, y: y(v) + 4, 'text-anchor': 'end' }, label),
      );
    }
    parts.push(
      svgElement('text', { x: PANEL.left + PANEL.plot / 2, y: PANEL.top + PANEL.plot + 34, 'text-anchor': 'middle' }, 'IoU threshold'),
      svgElement(
        'text',
        { x: 14, y: PANEL.top + PANEL.plot / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${PANEL.top + PANEL.plot / 2})` },
        'Recall',
      ),
    );
    const legend: SvgMarkup[] = [];
    series.forEach(({ legend: text, recall, color: given }, s) => {
      const color = given ?? SERIES_COLORS[s % SERIES_COLORS.length];
      if (recall !== null) {
        if (recall.length !== thresholds.length)
          throw new Error(`panel '${title}', series '${text}': ${recall.length} recall values for ${thresholds.length} thresholds`);
        const points = thresholds.map((t, i) => `${attributeValue(x(t))},${attributeValue(y(recall[i] ?? 0))}`).join(' ');
        parts.push(svgElement('polyline', { points, fill: 'none', stroke: color, 'stroke-width': 1.5 }));
      }
      const entryY = PANEL.top + PANEL.plot - 12 - 16 * (series.length - 1 - s);
      legend.push(
        svgElement('line', { x1: PANEL.left + 10, y1: entryY - 4, x2: PANEL.left + 28, y2: entryY - 4, stroke: color, 'stroke-width': 2 }),
        svgElement('text', { x: PANEL.left + 32, y: entryY }, text),
      );
    });
    // About 6 px per character of the 12 px sans-serif legend text.
    const boxWidth = Math.min(PANEL.plot - 8, Math.max(215, 32 + 6 * Math.max(0, ...series.map((s) => s.legend.length))));
    const boxHeight = 16 * series.length + 6;
    parts.push(
      svgElement('rect', {
        x: PANEL.left + 4,
        y: PANEL.top + PANEL.plot - boxHeight - 4,
        width: boxWidth,
        height: boxHeight,
        fill: '#ffffff',
        'fill-opacity': 0.85,
        stroke: '#cccccc',
      }),
      ...legend,
    );
    const [column, row] = [p % columns, Math.floor(p / columns)];
    return svgElement(
      'g',
      { transform: row === 0 ? `translate(${column * PANEL.width} 0)` : `translate(${column * PANEL.width} ${row * PANEL.height})` },
      ...parts,
    );
  });
  const rows = Math.max(1, Math.ceil(panels.length / columns));
  return svgDocument(
    Math.min(columns, Math.max(1, panels.length)) * PANEL.width,
    rows * PANEL.height,
    svgElement('style', {}, 'text { font-family: sans-serif; font-size: 12px; }'),
    ...rendered,
  );
}
