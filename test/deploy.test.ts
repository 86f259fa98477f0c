// The deploy/ files are valid for the tools that read them: nginx -t on the
// rendered balancer config, promtool on the Prometheus config and recording
// rules, the Grafana dashboard's queries (each a recording rule, each valid
// PromQL), and the Kubernetes manifests (YAML, with the probes and the drain
// wired as docs/deploy.md says). Needs the Debian packages nginx, prometheus
// and python3-yaml (.ci/run installs them).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NGINX, nginxArgs, renderNginxConf } from '../bench/replicas/nginx';
import { PROMTOOL, renderPrometheusConf } from '../bench/replicas/prometheus';
import { deployFile, renderTemplate } from '../bench/replicas/templates';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roost-deploy-'));
  fs.chmodSync(dir, 0o755); // nginx's workers (nobody, when run as root) reach their folder through it
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(cmd: string, args: string[], pkg: string) {
  if (!fs.existsSync(cmd)) throw new Error(`${cmd} is missing: apt-get install -y ${pkg}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const REPLICAS = ['127.0.0.1:18081', '127.0.0.1:18082'];

test('the nginx template renders one server line per replica and passes nginx -t', () => {
  const prefix = path.join(dir, 'nginx');
  const conf = renderNginxConf(prefix, 18080, REPLICAS);
  const text = fs.readFileSync(conf, 'utf8');
  // Two upstreams: HTTP with passive checks, WebSocket without.
  expect(text.match(/^\s*server 127\.0\.0\.1:\d+ .*;$/gm)).toEqual([
    ...REPLICAS.map((r) => `        server ${r} max_fails=1 fail_timeout=5s;`),
    ...REPLICAS.map((r) => `        server ${r} max_fails=0;`),
  ]);
  expect(text).not.toMatch(/^[^#]*\$\{ROOST_/m);
  const r = run(NGINX, ['-t', ...nginxArgs(prefix, conf)], 'nginx');
  expect(r.out).toMatch(/syntax is ok/);
  expect(r.out).toMatch(/test is successful/);
  expect(r.status).toBe(0);
});

test('a template placeholder without a value is an error', () => {
  expect(() => renderTemplate('listen ${ROOST_LISTEN};', {}, [])).toThrow('template placeholder ${ROOST_LISTEN} has no value');
});

test('promtool accepts the Prometheus config (with its rules) and the recording rules', () => {
  const conf = renderPrometheusConf(path.join(dir, 'prom'), REPLICAS, '15s');
  expect(fs.readFileSync(conf, 'utf8')).toContain(`          - ${REPLICAS[1]}\n`);
  const rules = (fs.readFileSync(deployFile('prometheus', 'roost.rules.yml'), 'utf8').match(/- record: /g) ?? []).length;
  expect(rules).toBe(15);
  const c = run(PROMTOOL, ['check', 'config', conf], 'prometheus');
  expect(c.out).toMatch(/SUCCESS: 1 rule files found/);
  expect(c.out).toMatch(/SUCCESS: 15 rules found/);
  expect(c.status).toBe(0);
  const r = run(PROMTOOL, ['check', 'rules', deployFile('prometheus', 'roost.rules.yml')], 'prometheus');
  expect(r.out).toMatch(/SUCCESS: 15 rules found/);
  expect(r.status).toBe(0);
});

test("the Grafana dashboard's queries are recording rules, and valid PromQL", () => {
  const dash = JSON.parse(fs.readFileSync(deployFile('grafana', 'roost.json'), 'utf8'));
  const exprs: string[] = dash.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
  expect(exprs.length).toBeGreaterThan(5);
  const rules = fs.readFileSync(deployFile('prometheus', 'roost.rules.yml'), 'utf8');
  const recorded = new Set([...rules.matchAll(/- record: (\S+)/g)].map((m) => m[1]));
  expect(exprs.filter((e) => !recorded.has(e))).toEqual([]);
  // promtool parses each query as the expression of a throwaway rule.
  const file = path.join(dir, 'dashboard.rules.yml');
  fs.writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${exprs.map((e, i) => `      - record: dashboard_query_${i}\n        expr: ${e}\n`).join('')}`);
  const r = run(PROMTOOL, ['check', 'rules', file], 'prometheus');
  expect(r.out).toMatch(new RegExp(`SUCCESS: ${exprs.length} rules found`));
});

test('the Kubernetes manifests parse, probe /health, and give the drain time to finish', () => {
  const py = 'import json, sys, yaml; print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]))';
  const files = ['deployment.yaml', 'service.yaml', 'servicemonitor.yaml'].map((f) => deployFile('k8s', f));
  const r = spawnSync('python3', ['-c', py, ...files], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 yaml (apt-get install -y python3-yaml): ${r.stderr}`);
  const docs = JSON.parse(r.stdout);
  expect(docs.map((d: any) => `${d.apiVersion} ${d.kind}`)).toEqual(['apps/v1 Deployment', 'v1 Service', 'monitoring.coreos.com/v1 ServiceMonitor']);
  const [deployment, service, monitor] = docs;
  const pod = deployment.spec.template.spec;
  const c = pod.containers[0];
  expect(c.readinessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
  expect(c.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
  const drain = Number(c.args[c.args.indexOf('--drain-seconds') + 1]);
  const preStopSleep = Number(/sleep (\d+)/.exec(c.lifecycle.preStop.exec.command.join(' '))![1]);
  // preStop, then the health period, then up to 30 s for running requests (docs/api.md).
  expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStopSleep + drain + 30);
  const labels = deployment.spec.template.metadata.labels;
  expect(service.spec.selector).toEqual(labels);
  expect(monitor.spec.selector.matchLabels).toEqual(service.metadata.labels);
  expect(monitor.spec.endpoints[0]).toMatchObject({ port: service.spec.ports[0].name, path: '/metrics' });
  expect(service.spec.ports[0].targetPort).toBe(c.ports[0].name);
});
