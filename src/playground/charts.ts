/**
 * Small inline SVG line charts (sparklines) for the live panel: a fixed-size
 * ring of the last N values, redrawn as one polyline scaled to its maximum.
 */

const SVG = 'http://www.w3.org/2000/svg';

export class Sparkline {
  private readonly values: number[] = [];
  private readonly line: SVGPolylineElement;
  private readonly svg: SVGSVGElement;

  constructor(
    container: HTMLElement,
    private readonly capacity = 60,
    private readonly width = 160,
    private readonly height = 36,
  ) {
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    this.svg.setAttribute('width', String(width));
    this.svg.setAttribute('height', String(height));
    this.svg.classList.add('spark');
    this.line = document.createElementNS(SVG, 'polyline');
    this.svg.append(this.line);
    container.append(this.svg);
  }

  push(value: number): void {
    this.values.push(value);
    if (this.values.length > this.capacity) this.values.shift();
    const max = Math.max(1e-9, ...this.values);
    const step = this.width / Math.max(1, this.capacity - 1);
    const offset = this.capacity - this.values.length;
    const points = this.values.map((v, i) => `${((offset + i) * step).toFixed(1)},${(this.height - 2 - (v / max) * (this.height - 4)).toFixed(1)}`);
    this.line.setAttribute('points', points.join(' '));
    this.svg.dataset['points'] = String(this.values.length);
  }
}
