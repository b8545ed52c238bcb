/** Small dependency-free SVG line charts for the benchmark report. */
export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly logX?: boolean;
  readonly logY?: boolean;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

export function lineChart(series: readonly Series[], o: ChartOptions): string {
  const W = 640;
  const H = 400;
  const L = 70;
  const R = 170;
  const T = 40;
  const B = 50;
  const tx = (v: number): number => (o.logX ? Math.log10(Math.max(v, 1e-12)) : v);
  const ty = (v: number): number => (o.logY ? Math.log10(Math.max(v, 1e-12)) : v);
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  let x0 = Math.min(...pts.map(([x]) => tx(x)));
  let x1 = Math.max(...pts.map(([x]) => tx(x)));
  let y0 = Math.min(0, ...pts.map(([, y]) => ty(y)));
  let y1 = Math.max(...pts.map(([, y]) => ty(y)));
  if (o.logY) y0 = Math.min(...pts.map(([, y]) => ty(y)));
  if (!(x1 > x0)) [x0, x1] = [x0 - 1, x0 + 1];
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y0 + 1];
  const px = (x: number): number => L + ((tx(x) - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number): number => H - B - ((ty(y) - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(o.yLabel)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4;
    const y = H - B - ((H - T - B) * i) / 4;
    const label = o.logY ? fmt(10 ** yv) : fmt(yv);
    parts.push(`<line x1="${L - 4}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#ddd"/><text x="${L - 6}" y="${y + 4}" text-anchor="end">${label}</text>`);
    const xv = x0 + ((x1 - x0) * i) / 4;
    const x = L + ((W - L - R) * i) / 4;
    const xl = o.logX ? fmt(10 ** xv) : fmt(xv);
    parts.push(`<text x="${x}" y="${H - B + 16}" text-anchor="middle">${xl}</text>`);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] ?? 'black';
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length === 0) return;
    const d = good.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of good) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = T + 14 + i * 18;
    parts.push(
      `<line x1="${W - R + 12}" y1="${ly - 4}" x2="${W - R + 32}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/><text x="${W - R + 38}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}
