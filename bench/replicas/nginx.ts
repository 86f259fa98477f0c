// nginx in front of the replicas, from deploy/nginx/roost.conf, with its pid,
// logs and temp files in a folder of the run (never the system's).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Helper, startHelper, waitUntil } from './process';
import { renderInto } from './templates';

export const NGINX = process.env.NGINX ?? '/usr/sbin/nginx';

/** Renders deploy/nginx/roost.conf into prefix; returns the config's path. */
export function renderNginxConf(prefix: string, listenPort: number, replicas: readonly string[]): string {
  fs.mkdirSync(prefix, { recursive: true });
  // Run as root, nginx's workers are `nobody`: they must reach the folder.
  fs.chmodSync(prefix, 0o755);
  return renderInto(prefix, 'nginx/roost.conf', { ROOST_PREFIX: prefix, ROOST_LISTEN: `127.0.0.1:${listenPort}` }, replicas);
}

/** nginx's flags for a rendered config: prefix, config and error log in the run's folder. */
export function nginxArgs(prefix: string, conf: string): string[] {
  return ['-p', prefix, '-c', conf, '-e', path.join(prefix, 'error.log')];
}

export interface Nginx extends Helper {
  url: string;
  prefix: string;
}

export async function startNginx(prefix: string, listenPort: number, replicas: readonly string[]): Promise<Nginx> {
  const conf = renderNginxConf(prefix, listenPort, replicas);
  const log = path.join(prefix, 'nginx.out');
  const helper = startHelper(NGINX, [...nginxArgs(prefix, conf), '-g', 'daemon off;'], log);
  const url = `http://127.0.0.1:${listenPort}`;
  try {
    // Any HTTP answer (even a 502 before the replicas are up) means nginx listens.
    await waitUntil(async () => (await fetch(`${url}/nginx-probe`)).status > 0, 15_000, 'nginx to listen', path.join(prefix, 'error.log'));
  } catch (e) {
    await helper.stop('SIGKILL');
    throw e;
  }
  return { ...helper, url, prefix, stop: (signal: NodeJS.Signals = 'SIGQUIT', graceMs = 10_000) => helper.stop(signal, graceMs) };
}
