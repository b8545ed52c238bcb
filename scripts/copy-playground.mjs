// Part of `npm run build`: copies the playground's page and styles (src/playground/*.html, *.css)
// beside its compiled scripts in dist/playground, which the server serves at / and /playground/.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';

const from = 'src/playground';
const to = 'dist/playground';
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from)) {
  if (['.html', '.css', '.svg'].includes(extname(name))) copyFileSync(join(from, name), join(to, name));
}
