// The soak's pass rule (bench/README.md, "Soak"): after the warm-up (the
// first sixth of the run), a metric passes when its trend over the rest of the
// run stays within noise:
//   growth  = Theil-Sen slope of the samples × the window's length
//   allowed = max(RELATIVE × level, the metric's absolute floor)
//   level   = median of the samples in the window
//   pass   <=> growth <= allowed   (a falling metric always passes)
// Theil-Sen (the median of the slopes between every pair of samples) rather
// than least squares: one GC pause or a neighbour's burst on a shared machine
// is a single outlier sample, and it must not tilt the line; a leak moves every
// sample, and it does.

export const RELATIVE = 0.05;

export interface Trend {
  samples: number;
  level: number;
  /** Per second. */
  slope: number;
  intercept: number;
  windowSeconds: number;
  growth: number;
  allowed: number;
  pass: boolean;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function theilSen(points: Array<[x: number, y: number]>): { slope: number; intercept: number } {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dx = points[j][0] - points[i][0];
      if (dx !== 0) slopes.push((points[j][1] - points[i][1]) / dx);
    }
  }
  const slope = slopes.length ? median(slopes) : 0;
  return { slope, intercept: median(points.map(([x, y]) => y - slope * x)) };
}

/** Judges the samples at or after `from` (seconds); fewer than 3 fail. */
export function judge(points: Array<[x: number, y: number]>, from: number, floor: number): Trend {
  const window = points.filter(([x, y]) => x >= from && Number.isFinite(y));
  const level = median(window.map((p) => p[1]));
  const { slope, intercept } = theilSen(window);
  const windowSeconds = window.length ? window[window.length - 1][0] - window[0][0] : 0;
  const growth = slope * windowSeconds;
  const allowed = Math.max(RELATIVE * (Number.isFinite(level) ? level : 0), floor);
  return { samples: window.length, level, slope, intercept, windowSeconds, growth, allowed, pass: window.length >= 3 && growth <= allowed };
}
