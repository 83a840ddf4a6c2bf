// What the one shared pod watch saves: N running servers polled R times, with the watch (polls
// read the local copy) and without it (a GET per poll, as a replica that does not lead, or
// KubeSpawner without its reflector). Against the fake apiserver on loopback, so the numbers
// are the hub's own costs plus loopback HTTPS, and the request counts are what a real
// apiserver would receive.
//   node --conditions=seahorse-source packages/hub/bench/kube-poll.ts [--servers=200] [--rounds=10]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@seahorse/runtime';
import { issueCertificate, LogCapture, makeCertificateAuthority } from '@seahorse/runtime/testing';
import { KubeClient } from '../src/spawners/kube-client.ts';
import { defaultKubeTraits } from '../src/spawners/kube-objects.ts';
import { createKubeSpawner } from '../src/spawners/kubernetes.ts';
import { PodReflector } from '../src/spawners/pod-reflector.ts';
import type { JsonObject } from '../src/spawners/spawner.ts';
import { FakeApiServer } from '../test/fake-apiserver.ts';
import { serverSpec } from '../test/kube-helpers.ts';

const option = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const servers = Number(option('servers', '200'));
const rounds = Number(option('rounds', '10'));
const namespace = 'jupyterhub';
const token = 'bench-token-0123456789abcdef';

const dir = mkdtempSync(join(tmpdir(), 'kube-bench-'));
makeCertificateAuthority(dir);
const fake = new FakeApiServer({ tls: issueCertificate(dir, 'apiserver'), token });
const url = new URL(await fake.listen());
const client = new KubeClient({ server: url, token, namespace, ca: readFileSync(join(dir, 'ca.crt')) });
const log = createLogger({ name: 'bench', level: 'warn', destination: new LogCapture() });
const traits = { ...defaultKubeTraits, namespace };

// The pods as a running hub's servers left them.
const states: JsonObject[] = [];
for (let i = 0; i < servers; i++) {
  const name = `jupyter-user${i}`;
  await client.create(`/api/v1/namespaces/${namespace}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { component: 'singleuser-server' } },
    spec: { containers: [{ name: 'notebook', image: 'x' }] },
  });
  fake.setRunning(namespace, name);
  states.push({ pod_name: name, namespace, dns_name: '' });
}

async function run(withWatch: boolean): Promise<{ ms: number; requests: number }> {
  const reflector = new PodReflector(client, namespace, 'singleuser-server', log);
  if (withWatch) {
    reflector.start();
    await reflector.waitSynced(10_000);
  }
  const spawners = states.map((state, i) =>
    createKubeSpawner(
      { spec: serverSpec(`user${i}`, false, '', ''), state, log, progress: () => undefined },
      { client, reflector },
      traits,
    ),
  );
  const before = fake.requests.length;
  const began = performance.now();
  for (let round = 0; round < rounds; round++) {
    const results = await Promise.all(spawners.map((spawner) => spawner.poll()));
    if (results.some((status) => status !== null)) throw new Error('a server was not running');
  }
  const ms = performance.now() - began;
  const requests = fake.requests.length - before;
  await reflector.stop();
  return { ms, requests };
}

const watched = await run(true);
const direct = await run(false);
const row = (label: string, r: { ms: number; requests: number }) =>
  `| ${label} | ${r.requests} | ${(r.ms / rounds).toFixed(1)} | ${((r.ms * 1000) / (rounds * servers)).toFixed(1)} |`;
process.stdout.write(
  [
    `${servers} running servers, ${rounds} poll rounds`,
    '',
    '| polls read | apiserver requests | ms per round | µs per poll |',
    '| --- | --- | --- | --- |',
    row('the shared pod watch', watched),
    row('a GET per poll', direct),
    '',
  ].join('\n'),
);
client.close();
await fake.close();
rmSync(dir, { recursive: true, force: true });
