// A bounded random-mutation fuzz of the proxy's target client (issue 10): corpus responses with
// bytes flipped, inserted, deleted and spliced (or left whole), written to the proxy in random TCP
// segments with small delays, some followed by a close and some by a stall. Whatever arrives, the
// embedded proxy must not throw, must end every exchange (an answer or a closed connection) before
// a deadline, and must leave no socket open; and a second run holds the proxy's verdict on each
// mutated response to llhttp's, as the differential test does for the corpus. The seed is fixed
// and printed with every failure: SEAHORSE_FUZZ_SEED runs another, SEAHORSE_FUZZ_CASE=<n> (or
// d<n> for the differential run) replays one case, SEAHORSE_FUZZ_MS makes a run longer.
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestProxy, type TestProxy } from './helpers.ts';
import {
  type CorpusEntry,
  corpus,
  describe as describeObservation,
  judge,
  type Method,
  type Observation,
  observe,
  type RawTarget,
  startRawTarget,
} from './response-corpus.ts';

const seed = Number(process.env.SEAHORSE_FUZZ_SEED ?? 0x5eaf00d) >>> 0 || 1;
const budgetMs = Number(process.env.SEAHORSE_FUZZ_MS ?? 4000);
/** The differential run: each case goes to llhttp and through the proxy, one after the other. */
const diffBudgetMs = Number(process.env.SEAHORSE_FUZZ_MS ?? 3000);
/** Requests in flight at once (stalled targets wait for the proxy's timeout in parallel). */
const concurrency = 6;
/** The proxy's `--proxy-timeout`: how long a stalled target may hold an exchange. */
const proxyTimeoutMs = 1000;
/** An exchange must have ended by then, answered or closed. */
const deadlineMs = 8000;

/** xorshift32: small, fast, and the same sequence for the same seed everywhere. */
export class Xorshift {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.#state = x;
    return x;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

// Bytes that matter to an HTTP/1.1 parser, spliced in more often than random ones.
const interesting = [
  ...'\r\n\0 \t:;,=" 0123456789abcdefABCDEF-+xX',
  '\x7f',
  '\x80',
  '\xff',
  '\x0b',
  '\x0c',
].map((char) => char.charCodeAt(0));
const fragments = [
  '\r\n',
  '\r\n\r\n',
  '\n',
  '\r',
  'Content-Length: 5\r\n',
  'Content-Length: 0\r\n',
  'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: chunked, identity\r\n',
  'Connection: close\r\n',
  ' folded\r\n',
  '0\r\n\r\n',
  'ffffffffffffffff\r\n',
  '5;ext="x"\r\nhello\r\n',
  'HTTP/1.1 200 OK\r\n',
  'HTTP/1.1 100 Continue\r\n\r\n',
  'X-Injected: a\x00b\r\n',
].map((text) => Buffer.from(text, 'latin1'));

/** One to four random mutations of `input`. */
export function mutate(random: Xorshift, input: Buffer): Buffer {
  let bytes = Buffer.from(input);
  const count = 1 + random.below(4);
  for (let i = 0; i < count; i++) {
    const at = random.below(bytes.length + 1);
    switch (random.below(8)) {
      case 0: // flip a bit
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)]! ^= 1 << random.below(8);
        break;
      case 1: // overwrite with an interesting byte
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = random.pick(interesting);
        break;
      case 2: // insert an interesting byte
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from([random.pick(interesting)]),
          bytes.subarray(at),
        ]);
        break;
      case 3: // insert a random byte
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([random.below(256)]), bytes.subarray(at)]);
        break;
      case 4: // delete a few bytes
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + random.below(4))]);
        break;
      case 5: // splice in a fragment of HTTP
        bytes = Buffer.concat([bytes.subarray(0, at), random.pick(fragments), bytes.subarray(at)]);
        break;
      case 6: // duplicate a range
        {
          const length = random.below(16);
          bytes = Buffer.concat([
            bytes.subarray(0, at + length),
            bytes.subarray(at, at + length),
            bytes.subarray(at),
          ]);
        }
        break;
      default: // truncate
        bytes = bytes.subarray(0, at);
        break;
    }
  }
  return bytes;
}

/** Cuts `bytes` into one to six segments at random places. */
export function segment(random: Xorshift, bytes: Buffer): Buffer[] {
  const cuts = new Set<number>();
  const count = random.below(6);
  for (let i = 0; i < count; i++) cuts.add(1 + random.below(Math.max(1, bytes.length - 1)));
  const points = [...cuts].filter((cut) => cut < bytes.length).sort((a, b) => a - b);
  const segments: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    segments.push(bytes.subarray(from, point));
    from = point;
  }
  segments.push(bytes.subarray(from));
  return segments;
}

interface Case {
  n: number;
  entry: CorpusEntry;
  bytes: Buffer;
  writes: Buffer[];
  gapMs: number;
  after: 'close' | 'keep';
  method: Method;
  /** `e`: the robustness run; `d`: the differential run (a stream of cases of its own). */
  stream: 'e' | 'd';
}

function show(fuzzCase: Case): string {
  const text = fuzzCase.bytes.toString('latin1');
  return (
    `seed=${seed} case=${fuzzCase.stream === 'd' ? 'd' : ''}${fuzzCase.n} from ${fuzzCase.entry.name}, ${fuzzCase.method}, ` +
    `${fuzzCase.writes.length} segments ${fuzzCase.gapMs} ms apart, then ${fuzzCase.after}: ` +
    JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}... (${text.length} bytes)` : text)
  );
}

function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
}

/** Case `n` of a seed and stream, the same whatever order the concurrent workers draw cases in. */
export function makeCase(n: number, sources: readonly CorpusEntry[], stream: Case['stream'] = 'e'): Case {
  const random = new Xorshift(seed ^ Math.imul(n + 1, 0x9e3779b1) ^ (stream === 'd' ? 0x5bd1e995 : 0));
  const entry = random.pick(sources);
  // One case in four is a corpus response as it is: only its cutting into segments is new.
  const bytes = random.below(4) === 0 ? Buffer.from(entry.bytes) : mutate(random, entry.bytes);
  return {
    n,
    entry,
    bytes,
    writes: segment(random, bytes),
    gapMs: random.below(4),
    // A stall after the bytes must end by the proxy's timeout: rarer, and slower; llhttp would
    // wait for ever, so the differential run always closes.
    after: random.below(8) === 0 && stream === 'e' ? 'keep' : 'close',
    method: random.below(5) === 0 ? 'HEAD' : 'GET',
    stream,
  };
}

let proxy: TestProxy;
let target: RawTarget;
let diffTarget: RawTarget;
const cases: Case[] = [];
const diffCases: Case[] = [];
/** Cases whose exchange is under way: an exception that escapes names them all. */
const inFlight = new Set<Case>();
const thrown: string[] = [];
const onUncaught = (error: unknown) =>
  thrown.push(`${String(error)}, while in flight:\n    ${[...inFlight].map(show).join('\n    ')}`);

before(async () => {
  process.on('uncaughtException', onUncaught);
  target = await startRawTarget((n) => {
    const fuzzCase = cases[n]!;
    return { writes: fuzzCase.writes, after: fuzzCase.after, gapMs: fuzzCase.gapMs };
  });
  diffTarget = await startRawTarget((n) => {
    const fuzzCase = diffCases[n]!;
    return { writes: fuzzCase.writes, after: fuzzCase.after, gapMs: fuzzCase.gapMs };
  });
  proxy = await startTestProxy(['--proxy-timeout', String(proxyTimeoutMs)]);
  await proxy.addRoute('/e', target.url);
  await proxy.addRoute('/d', diffTarget.url);
});

after(async () => {
  process.off('uncaughtException', onUncaught);
  await proxy.close();
  await target.close();
  await diffTarget.close();
});

test(`mutated target responses never crash, hang or leak a socket in the proxy (seed ${seed})`, async (t) => {
  // Small entries only: the large bodies add time, not cases.
  const sources = corpus.filter((entry) => entry.bytes.length <= 32 * 1024);
  const only = process.env.SEAHORSE_FUZZ_CASE;
  if (only?.startsWith('d')) return; // replaying a case of the differential run
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const baseline = tcpSockets();
  const failures: string[] = [];
  const stopAt = Date.now() + budgetMs;

  const run = async (fuzzCase: Case): Promise<void> => {
    inFlight.add(fuzzCase);
    const result: Observation = await observe(`${proxy.url}/e/${fuzzCase.n}`, {
      method: fuzzCase.method,
      agent,
      deadlineMs,
    });
    inFlight.delete(fuzzCase);
    if (result.outcome === 'hang')
      failures.push(`no answer and no close within ${deadlineMs} ms: ${show(fuzzCase)}`);
    else if (result.outcome === 'complete' && (result.status! < 100 || result.status! > 999))
      failures.push(`an impossible status ${result.status}: ${show(fuzzCase)}`);
  };

  if (only !== undefined) {
    // Replays one case: the cases before it are made (not run) so that it gets its number.
    const n = Number(only);
    for (let i = 0; i <= n; i++) cases.push(makeCase(i, sources));
    await run(cases[n]!);
  } else {
    const worker = async (): Promise<void> => {
      while (Date.now() < stopAt && failures.length + thrown.length < 5) {
        const fuzzCase = makeCase(cases.length, sources);
        cases.push(fuzzCase);
        await run(fuzzCase);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
  agent.destroy();
  t.diagnostic(`${cases.length} cases, seed ${seed}`);

  const replay = `replay one with SEAHORSE_FUZZ_SEED=${seed} SEAHORSE_FUZZ_CASE=<case>`;
  assert.deepEqual(thrown, [], `exceptions escaped the proxy (${replay})`);
  assert.deepEqual(failures, [], `fuzz failures (${replay}):\n  ${failures.join('\n  ')}`);
  if (only === undefined)
    assert.ok(cases.length >= 50, `only ${cases.length} cases ran in ${budgetMs} ms (seed ${seed})`);

  // Stalled targets are cut off by the proxy's timeout, and pooled connections expire.
  const targetClosed = await waitFor('the target connections to close', () => target.open === 0, {
    timeoutMs: 20_000,
  }).catch(() => false);
  assert.ok(
    targetClosed,
    `${target.open} target connections still open after ${cases.length} cases (seed ${seed})`,
  );
  const socketsClosed = await waitFor('the sockets to close', () => tcpSockets() <= baseline, {
    timeoutMs: 20_000,
  }).catch(() => false);
  assert.ok(
    socketsClosed,
    `${tcpSockets()} TCP sockets open in this process, ${baseline} before the ${cases.length} cases (seed ${seed})`,
  );
});

test(`mutated target responses are accepted, relayed and refused by the proxy as by llhttp (seed ${seed})`, async (t) => {
  const sources = corpus.filter((entry) => entry.bytes.length <= 32 * 1024);
  const replaying = process.env.SEAHORSE_FUZZ_CASE;
  if (replaying !== undefined && !replaying.startsWith('d')) return; // replaying a robustness case
  // Mismatches by kind (the problem without its numbers): the first example of each, and a count.
  const kinds = new Map<string, { example: string; count: number }>();
  const stopAt = Date.now() + diffBudgetMs;
  const run = async (fuzzCase: Case): Promise<void> => {
    inFlight.add(fuzzCase);
    const url = `/d/${fuzzCase.n}`;
    const oracle = await observe(`${diffTarget.url}${url}`, {
      method: fuzzCase.method,
      agent: false,
      deadlineMs,
    });
    const proxied = await observe(`${proxy.url}${url}`, {
      method: fuzzCase.method,
      agent: false,
      deadlineMs,
    });
    inFlight.delete(fuzzCase);
    // Judged as a corpus entry of its own: only what leeway() finds in the bytes may be refused.
    const entry: CorpusEntry = {
      name: `case d${fuzzCase.n}`,
      bytes: fuzzCase.bytes,
      after: 'close',
      methods: [],
    };
    const { problems } = judge(entry, oracle, proxied);
    if (problems.length === 0) return;
    const kind = problems.join('; ').replace(/\d+/g, 'N');
    const seen = kinds.get(kind);
    if (seen) seen.count++;
    else
      kinds.set(kind, {
        example: `${problems.join('; ')}: ${show(fuzzCase)}\n      llhttp: ${describeObservation(oracle)}\n      proxy: ${describeObservation(proxied)}`,
        count: 1,
      });
  };
  if (replaying !== undefined) {
    const n = Number(replaying.slice(1));
    for (let i = 0; i <= n; i++) diffCases.push(makeCase(i, sources, 'd'));
    await run(diffCases[n]!);
  } else {
    while (Date.now() < stopAt && kinds.size < 10 && thrown.length === 0) {
      const fuzzCase = makeCase(diffCases.length, sources, 'd');
      diffCases.push(fuzzCase);
      await run(fuzzCase);
    }
  }
  t.diagnostic(`${diffCases.length} cases, seed ${seed}`);
  const replay = `replay one with SEAHORSE_FUZZ_SEED=${seed} SEAHORSE_FUZZ_CASE=d<case>`;
  assert.deepEqual(thrown, [], `exceptions escaped the proxy (${replay})`);
  const failures = [...kinds.values()].map(({ example, count }) => `${count} case(s) like: ${example}`);
  assert.deepEqual(failures, [], `the proxy and llhttp disagree (${replay}):\n  ${failures.join('\n  ')}`);
  if (replaying === undefined)
    assert.ok(
      diffCases.length >= 30,
      `only ${diffCases.length} cases ran in ${diffBudgetMs} ms (seed ${seed})`,
    );
  const closed = await waitFor('the target connections to close', () => diffTarget.open === 0, {
    timeoutMs: 20_000,
  }).catch(() => false);
  assert.ok(
    closed,
    `${diffTarget.open} target connections still open after ${diffCases.length} cases (seed ${seed})`,
  );
});
