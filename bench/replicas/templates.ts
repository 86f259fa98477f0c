// The deploy/ templates (nginx, Prometheus) filled in for a run: ${ROOST_NAME}
// placeholders get values; a line naming ${ROOST_REPLICA} is repeated once per
// replica. A placeholder left without a value is an error, not a silent blank.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { repoRoot } from '../load/paths';

export function deployFile(...parts: string[]): string {
  return path.join(repoRoot(), 'deploy', ...parts);
}

export function renderTemplate(text: string, vars: Record<string, string>, replicas: readonly string[]): string {
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    // Comments mention the placeholders; leave them as written.
    if (line.trimStart().startsWith('#')) {
      lines.push(line);
      continue;
    }
    const copies = line.includes('${ROOST_REPLICA}') ? replicas.map((r) => line.split('${ROOST_REPLICA}').join(r)) : [line];
    for (const copy of copies) {
      lines.push(
        copy.replace(/\$\{(ROOST_[A-Z_]+)\}/g, (_m, name: string) => {
          const v = vars[name];
          if (v === undefined) throw new Error(`template placeholder \${${name}} has no value`);
          return v;
        }),
      );
    }
  }
  return lines.join('\n');
}

/** Writes deploy/<rel> rendered into dir; returns the written path. */
export function renderInto(dir: string, rel: string, vars: Record<string, string>, replicas: readonly string[]): string {
  const out = path.join(dir, path.basename(rel));
  fs.writeFileSync(out, renderTemplate(fs.readFileSync(deployFile(rel), 'utf8'), vars, replicas));
  return out;
}
