// The lease endpoint (POST /semaphore/lease) against three real redis-server processes, over the
// webhook's real TLS, with real sidecar processes: sidecars renew, hold and release their own
// slot with the token minted at admission, and nothing else; nothing reaches Redis but the webhook.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { issueCertificate, type RedisServer, startRedis, waitFor } from '@seahorse/runtime/testing';
import { applyPatch, LeaseTokens, type Pod, WebhookLeaseClient } from '../src/index.ts';
import {
  containerEnv,
  fixture,
  type HttpsResponse,
  httpsCall,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  postReview,
  startCli,
  startTestWebhook,
  startWebhookProcess,
  type TestWebhook,
  testLeaseKey,
} from './helpers.ts';

const workload = 'shop/Deployment/checkout';
const prefix = 'seahorse:metrics-proxy-hook';

interface Admitted {
  pod: Pod;
  env: Record<string, string>;
  slot: string;
  version: string;
  token: string;
}

async function admit(url: string, ca: Buffer, uid: string, limit = 5): Promise<Admitted> {
  const review = fixture('review-deployment-pod.json');
  review.request.uid = uid;
  (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
    String(limit);
  const { response } = JSON.parse((await postReview(url, ca, review)).body);
  assert.equal(response.allowed, true, response.status?.message);
  const pod = applyPatch(
    structuredClone(review.request.object as Pod),
    JSON.parse(Buffer.from(response.patch, 'base64').toString()),
  );
  const env = containerEnv(pod.spec!.containers.at(-1)!);
  return {
    pod,
    env,
    slot: env.METRICS_PROXY_HOOK_SEMAPHORE_SLOT!,
    version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION!,
    token: env.METRICS_PROXY_HOOK_LEASE_TOKEN!,
  };
}

function lease(
  url: string,
  ca: Buffer,
  token: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<HttpsResponse> {
  return httpsCall(url, {
    ca,
    headers: {
      'content-type': 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Everything the semaphore keeps on each node, to prove a refused request changed nothing. */
async function snapshot(servers: RedisServer[]) {
  return Promise.all(
    servers.map(async (server) => ({
      keys: ((await server.command('KEYS', `${prefix}:*`)) as string[]).sort(),
      slots: await server.command('ZRANGE', `${prefix}:slots:${workload}`, '0', '-1', 'WITHSCORES'),
      versions: await server.command('HGETALL', `${prefix}:versions:${workload}`),
      overruns: await server.command('GET', `${prefix}:lease-overruns`),
    })),
  );
}

/** The longest lease any node has left for the slot, by the nodes' own clocks (-1: none). */
async function leaseLeft(servers: RedisServer[], slot: string): Promise<number> {
  let longest = -1;
  for (const server of servers) {
    const [seconds, micros] = (await server.command('TIME')) as string[];
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const score = await server.command('ZSCORE', `${prefix}:slots:${workload}`, slot);
    if (score !== null) longest = Math.max(longest, Number(score) - now);
  }
  return longest;
}

function certs(dir: string) {
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  return { certDir: join(dir, 'certs'), ca: readFileSync(join(dir, 'ca.crt')) };
}

/** Three Redis nodes and the webhook's certificates; `args` name the nodes, then `flags`. */
async function leaseRig(flags: string[] = []) {
  const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-lease-'));
  const { certDir, ca } = certs(dir);
  const args = [...servers.map((server) => `--redis=${server.host}:${server.port}`), ...flags];
  const close = async () => {
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  return { servers, certDir, ca, args, close };
}

describe('POST /semaphore/lease on a webhook with three Redis nodes', () => {
  let servers: RedisServer[];
  let ca: Buffer;
  let webhook: TestWebhook;
  let close: (() => Promise<void>) | undefined;
  let uids = 0;
  const uid = () => `00000000-0000-4000-8000-${String(++uids).padStart(12, '0')}`;

  before(async () => {
    const rig = await leaseRig(['--semaphore-lease-ttl=30s']);
    ({ servers, ca, close } = rig);
    webhook = await startTestWebhook(rig.certDir, rig.args);
  });
  after(async () => {
    await webhook?.close();
    await close?.();
  });

  test('a renewal shortens the admission lease to the running lease and answers the new expiry; a release frees the slot for good: the token replayed after it is refused and changes nothing', async () => {
    const pod = await admit(webhook.url, ca, uid());
    assert.ok((await leaseLeft(servers, pod.slot)) > 60_000, 'the admission lease (5m)');
    const renewed = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'renew',
      slot: pod.slot,
      version: pod.version,
    });
    assert.equal(renewed.status, 200, renewed.body);
    const answer = JSON.parse(renewed.body);
    assert.equal(answer.state, 'renewed');
    assert.equal(answer.version, pod.version);
    assert.equal(answer.leaseMs, 30_000);
    const expiresIn = Date.parse(answer.expiresAt) - Date.now();
    assert.ok(expiresIn > 25_000 && expiresIn <= 30_000, `expires in ${expiresIn} ms`);
    const left = await leaseLeft(servers, pod.slot);
    assert.ok(left > 25_000 && left <= 30_000, `${left} ms left on the nodes`);

    const released = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'release',
      slot: pod.slot,
      version: pod.version,
    });
    assert.equal(released.status, 200, released.body);
    assert.deepEqual(JSON.parse(released.body), { state: 'released' });
    assert.equal(await leaseLeft(servers, pod.slot), -1, 'gone from every node');

    // Replayed: every action is refused with 404, and Redis is left exactly as it was.
    const before = await snapshot(servers);
    for (const body of [
      { action: 'renew', slot: pod.slot, version: pod.version },
      { action: 'renew', slot: pod.slot, version: 'another-version', overrun: false },
      { action: 'hold', slot: pod.slot, version: pod.version, holdMs: 10_000 },
      { action: 'release', slot: pod.slot, version: pod.version },
    ]) {
      const res = await lease(webhook.leaseUrl, ca, pod.token, body);
      assert.equal(res.status, 404, `${body.action}: ${res.body}`);
      const refusal = JSON.parse(res.body);
      assert.equal(refusal.code, 'SLOT_RELEASED');
      assert.match(refusal.message, /was released for good .* its token can no longer renew or take it/);
    }
    assert.deepEqual(await snapshot(servers), before);
    const metrics = await (await fetch(webhook.metricsUrl)).text();
    assert.match(metrics, /seahorse_metrics_proxy_hook_lease_requests_total\{action="renew",code="200"\} 1/);
    assert.match(metrics, /seahorse_metrics_proxy_hook_lease_requests_total\{action="renew",code="404"\} 2/);
  });

  test("a forged, altered, foreign or missing token is refused 401, another slot's token 403, and nothing changes", async () => {
    const mine = await admit(webhook.url, ca, uid());
    const theirs = await admit(webhook.url, ca, uid());
    const body = { action: 'renew', slot: mine.slot, version: mine.version };
    const [tag, payload, mac] = mine.token.split('.') as [string, string, string];
    // The same identity with a higher limit, under the original MAC.
    const raised = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), limit: 100 }),
    ).toString('base64url');
    const flipped = `${mac.slice(0, -2)}${mac.endsWith('AA') ? 'AB' : 'AA'}`;
    const foreign = new LeaseTokens([Buffer.from('another-installations-key-0123456789abcdef')]);
    const grant = { workload, slot: mine.slot, namespace: 'shop', pod: 'x', limit: 5, graceMs: 30_000 };
    const before = await snapshot(servers);
    for (const [what, token, headers] of [
      ['no token', undefined, {}],
      ['not Bearer', undefined, { authorization: `Basic ${mine.token}` }],
      ['garbage', 'not-a-token', {}],
      ['the payload altered (limit raised)', `${tag}.${raised}.${mac}`, {}],
      ['the MAC altered', `${tag}.${payload}.${flipped}`, {}],
      ['the MAC cut short', `${tag}.${payload}.${mac.slice(0, 10)}`, {}],
      ['minted with another key', foreign.mint(grant), {}],
      ['a huge token', `${tag}.${'A'.repeat(8000)}.${mac}`, {}],
    ] as const) {
      const res = await lease(webhook.leaseUrl, ca, token, body, headers);
      assert.equal(res.status, 401, `${what}: ${res.body}`);
      assert.match(String(res.headers['www-authenticate']), /^Bearer/, what);
      assert.match(JSON.parse(res.body).message, /token/, what);
    }
    // A valid token names its own slot only: the other pod's slot is out of its reach.
    for (const action of ['renew', 'release'] as const) {
      const res = await lease(webhook.leaseUrl, ca, mine.token, {
        action,
        slot: theirs.slot,
        version: theirs.version,
      });
      assert.equal(res.status, 403, res.body);
      assert.equal(JSON.parse(res.body).code, 'LEASE_TOKEN_OTHER_SLOT');
      assert.match(
        JSON.parse(res.body).message,
        new RegExp(
          `this token is for slot ${mine.slot} of ${workload}; a token renews or releases only its own slot, not ${theirs.slot}`,
        ),
      );
    }
    assert.deepEqual(await snapshot(servers), before);
    // The same key verifies the real token: a new LeaseTokens with the test key accepts it.
    assert.equal(new LeaseTokens([Buffer.from(testLeaseKey)]).verify(mine.token).slot, mine.slot);
  });

  test('malformed, unknown-field, wrongly typed, oversized and mis-sent requests are refused with a status and a message saying what to send; nothing changes', async () => {
    const pod = await admit(webhook.url, ca, uid());
    const good = { action: 'renew', slot: pod.slot, version: pod.version };
    const before = await snapshot(servers);
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['not JSON', '{"action":', 400, /the body is not JSON/],
      ['an array', '[]', 400, /must be a JSON object/],
      ['null', 'null', 400, /must be a JSON object/],
      [
        'no action',
        { slot: pod.slot, version: pod.version },
        400,
        /"action" must be "renew", "hold" or "release"/,
      ],
      ['an unknown action', { ...good, action: 'steal' }, 400, /"action" must be/],
      ['an unknown field', { ...good, limit: 100 }, 400, /unknown field "limit" for "renew"/],
      ['holdMs on a renewal', { ...good, holdMs: 5 }, 400, /unknown field "holdMs"/],
      ['no version', { action: 'renew', slot: pod.slot }, 400, /missing "version"/],
      ['a numeric slot', { ...good, slot: 5 }, 400, /"slot" must be a string/],
      ['an empty slot', { ...good, slot: '' }, 400, /"slot" must be 1 to 128 printable/],
      ['a slot with a newline', { ...good, slot: 'a\nb' }, 400, /"slot" must be/],
      ['overrun as a string', { ...good, overrun: 'yes' }, 400, /"overrun" must be true or false/],
      ['a hold without holdMs', { ...good, action: 'hold' }, 400, /missing "holdMs"/],
      ['a hold of 0 ms', { ...good, action: 'hold', holdMs: 0 }, 400, /"holdMs" must be a whole number/],
      ['a hold of 1.5 ms', { ...good, action: 'hold', holdMs: 1.5 }, 400, /"holdMs" must be a whole number/],
      ['5 KB of padding', { ...good, version: 'x'.repeat(5000) }, 413, /larger than 4096 bytes/],
    ];
    for (const [what, body, status, message] of cases) {
      const res = await lease(webhook.leaseUrl, ca, pod.token, body);
      assert.equal(res.status, status, `${what}: ${res.body}`);
      const refusal = JSON.parse(res.body);
      assert.match(refusal.message, message, what);
      if (status === 400) assert.match(refusal.message, /send \{"action":"renew"/, what);
    }
    const wrongType = await lease(webhook.leaseUrl, ca, pod.token, good, { 'content-type': 'text/plain' });
    assert.equal(wrongType.status, 415);
    const get = await httpsCall(webhook.leaseUrl, { ca, method: 'GET' });
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    assert.deepEqual(await snapshot(servers), before);

    // A body larger than the limit sent without a length (chunked) is cut off with a 413 too.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(webhook.leaseUrl, {
        method: 'POST',
        ca,
        agent: false,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${pod.token}` },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(`${' '.repeat(1000)}`);
      req.end();
    });
    assert.equal(chunked, 413);
    // Still serving.
    const res = await lease(webhook.leaseUrl, ca, pod.token, good);
    assert.equal(res.status, 200, res.body);
  });

  test('a token holder flooding the endpoint is answered 429 (retry after a second) before any Redis work, and another slot is not slowed', async () => {
    const pod = await admit(webhook.url, ca, uid());
    const other = await admit(webhook.url, ca, uid());
    const renew = (p: Admitted) =>
      lease(webhook.leaseUrl, ca, p.token, { action: 'renew', slot: p.slot, version: p.version });
    const answers = await Promise.all(Array.from({ length: 40 }, () => renew(pod)));
    const limited = answers.filter((res) => res.status === 429);
    assert.ok(limited.length >= 15, `${limited.length} of 40 answered 429`);
    for (const res of answers) assert.ok([200, 429, 503].includes(res.status), `${res.status}: ${res.body}`);
    assert.equal(limited[0]!.headers['retry-after'], '1');
    assert.match(JSON.parse(limited[0]!.body).message, /retry after a second/);
    // The sidecar's client takes 429 as the webhook being unavailable for now: retried, never fatal.
    const client = new WebhookLeaseClient({
      url: new URL(webhook.leaseUrl),
      ca: ca.toString(),
      token: pod.token,
      slot: pod.slot,
      timeoutMs: 5000,
    });
    await assert.rejects(client.renew(pod.version, false), { code: 'METRICS_PROXY_LEASE_UNAVAILABLE' });
    client.close();
    const fine = await renew(other);
    assert.equal(fine.status, 200, fine.body);
    // The bucket refills: an honest sidecar's next renewal, a third of a lease later, passes.
    await waitFor('the bucket to refill', async () => (await renew(pod)).status === 200);
    // Both slots back for the tests after this one (the workload allows 5).
    for (const p of [pod, other]) {
      await waitFor(`slot ${p.slot} released`, async () => {
        const released = await lease(webhook.leaseUrl, ca, p.token, {
          action: 'release',
          slot: p.slot,
          version: p.version,
        });
        if (released.status === 429) return false;
        assert.equal(released.status, 200, released.body);
        return true;
      });
    }
  });

  test('a dry run (kubectl --dry-run=server -o yaml) shows no usable lease token: renewing with what its spec carries takes no slot', async () => {
    const review = fixture('review-deployment-pod.json');
    review.request.uid = uid();
    review.request.dryRun = true;
    (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
      '5';
    const { response } = JSON.parse((await postReview(webhook.url, ca, review)).body);
    assert.equal(response.allowed, true, response.status?.message);
    const pod = applyPatch(
      structuredClone(review.request.object as Pod),
      JSON.parse(Buffer.from(response.patch, 'base64').toString()),
    );
    const env = containerEnv(pod.spec!.containers.at(-1)!);
    const slot = env.METRICS_PROXY_HOOK_SEMAPHORE_SLOT!;
    assert.equal(slot, review.request.uid);
    const before = await snapshot(servers);
    for (const body of [
      { action: 'renew', slot, version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION },
      { action: 'renew', slot, version: '' },
    ]) {
      const res = await lease(webhook.leaseUrl, ca, env.METRICS_PROXY_HOOK_LEASE_TOKEN, body);
      assert.equal(res.status, 401, `the dry run's token took a slot: ${res.body}`);
    }
    assert.deepEqual(await snapshot(servers), before);
    assert.equal(await leaseLeft(servers, slot), -1);
  });

  test('a pod asking for an enormous grace period gets a token that verifies, and its hold is answered 200 with a lease of at most a year, not a 500 after the write', async () => {
    for (const seconds of [9_000_000_000_000, 10_000_000_000_000]) {
      const review = fixture('review-deployment-pod.json');
      const id = uid();
      review.request.uid = id;
      const object = review.request.object as Pod;
      object.metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '5';
      object.spec!.terminationGracePeriodSeconds = seconds;
      const { response } = JSON.parse((await postReview(webhook.url, ca, review)).body);
      assert.equal(response.allowed, true, response.status?.message);
      const env = containerEnv(
        applyPatch(
          structuredClone(object),
          JSON.parse(Buffer.from(response.patch, 'base64').toString()),
        ).spec!.containers.at(-1)!,
      );
      const version = env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION;
      const token = env.METRICS_PROXY_HOOK_LEASE_TOKEN;
      const renewed = await lease(webhook.leaseUrl, ca, token, { action: 'renew', slot: id, version });
      assert.equal(renewed.status, 200, `${seconds} s: ${renewed.body}`);
      const held = await lease(webhook.leaseUrl, ca, token, {
        action: 'hold',
        slot: id,
        version,
        holdMs: Number.MAX_SAFE_INTEGER,
      });
      assert.equal(held.status, 200, `${seconds} s: ${held.body}`);
      const year = 365 * 24 * 3600 * 1000;
      assert.equal(JSON.parse(held.body).leaseMs, year);
      const left = await leaseLeft(servers, id);
      assert.ok(left > year - 60_000 && left <= year, `${left} ms left`);
      // Room again for the suite's other pods (one workload, at most 5).
      const released = await lease(webhook.leaseUrl, ca, token, { action: 'release', slot: id, version });
      assert.equal(released.status, 200, released.body);
    }
  });

  test("a hold is capped at the pod's grace period and never takes a lapsed slot again", async () => {
    const pod = await admit(webhook.url, ca, uid());
    const held = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'hold',
      slot: pod.slot,
      version: pod.version,
      holdMs: 30 * 24 * 3600 * 1000,
    });
    assert.equal(held.status, 200, held.body);
    // The fixture pod's grace period, raised to the webhook's 30s floor.
    assert.equal(JSON.parse(held.body).leaseMs, 30_000);
    assert.ok((await leaseLeft(servers, pod.slot)) <= 30_000);
    // The slot lapses (its lease ran out on every node): a hold says so and writes nothing.
    for (const server of servers) {
      await server.command('ZADD', `${prefix}:slots:${workload}`, '1', pod.slot);
    }
    const gone = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'hold',
      slot: pod.slot,
      version: pod.version,
      holdMs: 1000,
    });
    assert.equal(gone.status, 409, gone.body);
    assert.equal(JSON.parse(gone.body).code, 'SLOT_GONE');
    assert.equal(await leaseLeft(servers, pod.slot), -1);
    // A renewal takes it again (room under the limit), under a new version.
    const again = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'renew',
      slot: pod.slot,
      version: pod.version,
    });
    assert.equal(again.status, 200, again.body);
    const retaken = JSON.parse(again.body);
    assert.equal(retaken.state, 'retaken');
    assert.notEqual(retaken.version, pod.version);
    assert.ok((await leaseLeft(servers, pod.slot)) > 25_000);
  });
});

test('with a majority of Redis nodes down the endpoint answers 503 and the sidecar says so, then reports its lease overrun; renewals resume when Redis is back', async () => {
  const { servers, certDir, ca, args, close } = await leaseRig(['--semaphore-lease-ttl=1s']);
  const webhook = await startTestWebhook(certDir, args);
  const pod = await admit(webhook.url, ca, '00000000-0000-4000-8000-0000000000b1');
  const sidecar = startCli(
    'sidecar',
    ['sidecar', '--target=http://127.0.0.1:9/metrics', '--address=127.0.0.1:0'],
    pod.env,
  );
  try {
    await waitFor('the first renewal', () => sidecar.output.includes('semaphore slot lease renewed'));
    servers[0]!.process.pause();
    servers[1]!.process.pause();
    const res = await lease(webhook.leaseUrl, ca, pod.token, {
      action: 'renew',
      slot: pod.slot,
      version: pod.version,
    });
    assert.equal(res.status, 503, res.body);
    assert.equal(res.headers['retry-after'], '1');
    assert.match(JSON.parse(res.body).message, /only 1 of 3 Redis nodes answered/);
    await waitFor('the sidecar to log the failed renewal', () =>
      /"level":"warn".*"err":"the webhook answered 503: .*"msg":"renewing the semaphore slot failed; retrying"/.test(
        sidecar.output,
      ),
    );
    // Longer than its lease without a renewal: never silent.
    await waitFor('the overrun', () => sidecar.output.includes('slot lease overran'), { timeoutMs: 10_000 });
    assert.match(sidecar.output, /"level":"error".*"leaseMs":1000.*"msg":"slot lease overran/);
    servers[0]!.process.resume();
    servers[1]!.process.resume();
    await waitFor('renewals to resume', () => sidecar.output.includes('semaphore slot lease renewed again'), {
      timeoutMs: 10_000,
    });
    // The overrun reached the webhook's metric with the first renewal Redis could answer.
    await waitFor('the webhook metric', async () =>
      /seahorse_metrics_proxy_hook_lease_overruns 1\b/.test(await (await fetch(webhook.metricsUrl)).text()),
    );
    assert.ok((await leaseLeft(servers, pod.slot)) > 0, 'the slot is held again');
  } finally {
    servers[0]!.process.resume();
    servers[1]!.process.resume();
    await sidecar.stop('SIGKILL');
    await webhook.close();
    await close();
  }
});

test('the webhook killed and started again: the sidecar logs each failed renewal and renews again once it is back', async () => {
  const { servers, certDir, ca, args, close } = await leaseRig(['--semaphore-lease-ttl=3s']);
  let webhook = await startWebhookProcess(certDir, args);
  const pod = await admit(webhook.url, ca, '00000000-0000-4000-8000-0000000000c1');
  const sidecar = startCli(
    'sidecar',
    ['sidecar', '--target=http://127.0.0.1:9/metrics', '--address=127.0.0.1:0', '--lease-timeout=500ms'],
    pod.env,
  );
  try {
    await waitFor('the first renewal', () => sidecar.output.includes('semaphore slot lease renewed'));
    await webhook.process.stop('SIGKILL');
    await waitFor('a failed renewal', () =>
      /"err":"the webhook at https:\/\/127\.0\.0\.1:\d+ did not answer: .*"msg":"renewing the semaphore slot failed; retrying"/.test(
        sidecar.output,
      ),
    );
    webhook = await startWebhookProcess(certDir, args, { port: webhook.port });
    await waitFor('renewals to resume', () => sidecar.output.includes('semaphore slot lease renewed again'), {
      timeoutMs: 10_000,
    });
    const left = await leaseLeft(servers, pod.slot);
    assert.ok(left > 0 && left <= 3000, `${left} ms left: renewed with the running lease`);
  } finally {
    await sidecar.stop('SIGKILL');
    await webhook.process.stop();
    await close();
  }
});

test('the webhook down when a stopping sidecar holds its slot (a replica restarting in a node drain): the hold is retried until one answers, so the slot stays leased to the end of the grace period', async () => {
  const { servers, certDir, ca, args, close } = await leaseRig(['--semaphore-lease-ttl=5s']);
  let webhook = await startWebhookProcess(certDir, args);
  const pod = await admit(webhook.url, ca, '00000000-0000-4000-8000-0000000000d1');
  const sidecar = startCli(
    'sidecar',
    [
      'sidecar',
      '--target=http://127.0.0.1:9/metrics',
      '--address=127.0.0.1:0',
      '--lease-timeout=300ms',
      '--termination-grace-period=12s',
      '--lameduck=0s',
    ],
    pod.env,
  );
  try {
    await waitFor('the first renewal', () => sidecar.output.includes('semaphore slot lease renewed'));
    await webhook.process.stop('SIGKILL');
    // The kubelet stops the pod while no webhook answers: an ordinary sidecar holds its slot
    // to the end of the grace period, since its application may still be draining.
    sidecar.signal('SIGTERM');
    await waitFor('a failed hold', () => sidecar.output.includes('holding the slot'));
    webhook = await startWebhookProcess(certDir, args, { port: webhook.port });
    assert.equal(await sidecar.exited, 0, sidecar.output);
    assert.ok(
      sidecar.output.includes("semaphore slot held until the pod's grace period ends"),
      sidecar.output,
    );
    const left = await leaseLeft(servers, pod.slot);
    assert.ok(left > 5000, `${left} ms left: the slot was not held past its running lease`);
  } finally {
    await sidecar.stop('SIGKILL');
    await webhook.process.stop();
    await close();
  }
});

test('a sidecar that never reaches the webhook (an egress NetworkPolicy in its namespace) says so at error level once its lease has passed, and reports the overrun when it finally takes its lapsed slot again', async () => {
  const { servers, certDir, ca, args, close } = await leaseRig([
    '--semaphore-lease-ttl=1s',
    '--semaphore-admission-ttl=2s',
  ]);
  let webhook = await startWebhookProcess(certDir, args);
  const pod = await admit(webhook.url, ca, '00000000-0000-4000-8000-0000000000e1');
  await webhook.process.stop();
  const sidecar = startCli(
    'sidecar',
    ['sidecar', '--target=http://127.0.0.1:9/metrics', '--address=127.0.0.1:0', '--lease-timeout=300ms'],
    pod.env,
  );
  try {
    await waitFor(
      'the error',
      () => sidecar.output.includes('no renewal of the semaphore slot has succeeded'),
      {
        timeoutMs: 10_000,
      },
    );
    assert.match(sidecar.output, /"level":"error".*"msg":"no renewal of the semaphore slot has succeeded/);
    // The admission lease (2s) runs out while the pod runs: the slot lapses.
    await waitFor('the admission lease to run out', async () => (await leaseLeft(servers, pod.slot)) === -1, {
      timeoutMs: 10_000,
    });
    webhook = await startWebhookProcess(certDir, args, { port: webhook.port });
    await waitFor('the slot taken again', () => sidecar.output.includes('semaphore slot taken again'), {
      timeoutMs: 10_000,
    });
    assert.match(sidecar.output, /"level":"error".*"msg":"slot lease overran: this pod ran without its slot/);
    await waitFor('the overrun counted', async () =>
      (await Promise.all(servers.map((server) => server.command('GET', `${prefix}:lease-overruns`)))).every(
        (count) => count === '1',
      ),
    );
  } finally {
    await sidecar.stop('SIGKILL');
    await webhook.process.stop();
    await close();
  }
});

test('with --client-ca-file the lease endpoint still serves sidecars, which present no client certificate; without --redis it is 404', async () => {
  const clients = mkdtempSync(join(tmpdir(), 'seahorse-lease-clients-'));
  makeCertificateAuthority(clients);
  const apiserver = issueCertificate(clients, 'kube-apiserver', { server: false });
  const { certDir, ca, args, close } = await leaseRig([`--client-ca-file=${join(clients, 'ca.crt')}`]);
  const webhook = await startTestWebhook(certDir, args);
  const plain = await startTestWebhook(certDir);
  try {
    const review = fixture('review-deployment-pod.json');
    (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
      '1';
    const admitted = await httpsCall(webhook.url, {
      ca,
      client: apiserver,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(review),
    });
    const { response } = JSON.parse(admitted.body);
    assert.equal(response.allowed, true, admitted.body);
    const pod = applyPatch(
      structuredClone(review.request.object as Pod),
      JSON.parse(Buffer.from(response.patch, 'base64').toString()),
    );
    const env = containerEnv(pod.spec!.containers.at(-1)!);
    const res = await lease(webhook.leaseUrl, ca, env.METRICS_PROXY_HOOK_LEASE_TOKEN, {
      action: 'renew',
      slot: env.METRICS_PROXY_HOOK_SEMAPHORE_SLOT,
      version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION,
    });
    assert.equal(res.status, 200, res.body);
    // /mutate still wants the API server's certificate.
    assert.equal((await postReview(webhook.url, ca, review)).status, 401);

    const off = await lease(plain.leaseUrl, ca, env.METRICS_PROXY_HOOK_LEASE_TOKEN, {
      action: 'renew',
      slot: env.METRICS_PROXY_HOOK_SEMAPHORE_SLOT,
      version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION,
    });
    assert.equal(off.status, 404, off.body);
    assert.match(JSON.parse(off.body).message, /runs without --redis: there is no semaphore/);
  } finally {
    await webhook.close();
    await plain.close();
    await close();
    rmSync(clients, { recursive: true, force: true });
  }
});
