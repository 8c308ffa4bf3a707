// A small horizontal bar chart as SVG, one bar per peer, no dependencies.

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function barChart(title: string, bars: Array<{ label: string; value: number }>): string {
  const width = 640;
  const left = 130;
  const barHeight = 24;
  const gap = 8;
  const top = 40;
  const height = top + bars.length * (barHeight + gap) + 20;
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const scale = (width - left - 90) / max;
  let body = '';
  bars.forEach((bar, i) => {
    const y = top + i * (barHeight + gap);
    const w = Math.max(1, bar.value * scale);
    const fill = bar.label.startsWith('wsgate') ? '#2a7ab0' : '#9aa5ae';
    body += `<text x="${left - 8}" y="${y + 16}" text-anchor="end" font-size="13">${escape(bar.label)}</text>`;
    body += `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${fill}"/>`;
    body += `<text x="${(left + w + 6).toFixed(1)}" y="${y + 16}" font-size="12">${bar.value < 10 ? bar.value.toFixed(2) : bar.value.toFixed(1)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>
${body}
</svg>
`;
}
