// A small line chart as SVG for time series (the soak's samples), no
// dependencies: one or more series over a shared x axis, the y axis from 0 so
// a slow growth looks as small as it is, an optional shaded warm-up band.

export interface LineSeries {
  label: string;
  points: Array<[x: number, y: number]>;
  color?: string;
  dashed?: boolean;
}

export interface LineChartOptions {
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** Shade x < shadeTo (e.g. the warm-up left out of the verdict). */
  shadeTo?: number;
  shadeLabel?: string;
}

const COLORS = ['#2a7ab0', '#9aa5ae', '#c0392b', '#27ae60'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** About `count` round tick values (1, 2, 5 × 10^k) from 0 to the first at or above `max`. */
function ticks(max: number, count: number): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let i = 0; out.length === 0 || out[out.length - 1] < max - step * 1e-9; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

function label(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  return Number(v.toPrecision(3)).toString();
}

export function lineChart(title: string, options: LineChartOptions): string {
  const width = 720;
  const height = 360;
  const left = 70;
  const right = 20;
  const top = 58;
  const bottom = 50;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const all = options.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xMin = Math.min(0, ...all.map((p) => p[0])); // time series start at 0
  const xMax = all.length ? Math.max(...all.map((p) => p[0]), xMin + 1e-9) : 1;
  const yTicks = ticks((all.length ? Math.max(...all.map((p) => p[1])) : 1) * 1.1, 5);
  const yMax = Math.max(yTicks[yTicks.length - 1], 1e-9);
  const sx = (x: number) => left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number) => top + plotH - (y / yMax) * plotH;
  let body = '';
  if (options.shadeTo !== undefined && options.shadeTo > xMin) {
    const w = sx(Math.min(options.shadeTo, xMax)) - left;
    body += `<rect x="${left}" y="${top}" width="${w.toFixed(1)}" height="${plotH}" fill="#eef0f2"/>`;
    if (options.shadeLabel) body += `<text x="${(left + w / 2).toFixed(1)}" y="${top + 14}" text-anchor="middle" font-size="11" fill="#777">${escape(options.shadeLabel)}</text>`;
  }
  for (const v of yTicks) {
    const y = sy(v).toFixed(1);
    body += `<line x1="${left}" x2="${left + plotW}" y1="${y}" y2="${y}" stroke="#ddd"/>`;
    body += `<text x="${left - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${label(v)}</text>`;
  }
  for (const v of ticks(xMax, 6).filter((t) => t >= xMin && t <= xMax * (1 + 1e-9))) {
    const x = sx(v).toFixed(1);
    body += `<line x1="${x}" x2="${x}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#333"/>`;
    body += `<text x="${x}" y="${top + plotH + 17}" text-anchor="middle" font-size="11">${label(v)}</text>`;
  }
  body += `<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`;
  body += `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`;
  body += `<text x="${left + plotW / 2}" y="${height - 10}" text-anchor="middle" font-size="12">${escape(options.xLabel)}</text>`;
  body += `<text x="16" y="${top + plotH / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${top + plotH / 2})">${escape(options.yLabel)}</text>`;
  options.series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length];
    const points = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (points.length > 0) {
      const d = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      body += `<polyline points="${d}" fill="none" stroke="${color}" stroke-width="${s.dashed ? 1.5 : 2}"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
    }
    // legend: entries side by side under the title, the last one at the right
    const ly = 38;
    const ox = left + plotW - 200 - 210 * (options.series.length - 1 - i);
    body += `<line x1="${ox}" x2="${ox + 20}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
    body += `<text x="${ox + 26}" y="${ly + 4}" font-size="11">${escape(s.label)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escape(title)}</text>
${body}
</svg>
`;
}
