// The differential test of issue 10: every corpus response goes to node:http's client (llhttp)
// straight from a raw TCP target, and to the same bytes through the proxy embedded in this
// process. The proxy must reject (502, or a cut connection once the head went out) exactly what
// llhttp rejects, and relay what llhttp accepts with the same status, end-to-end headers and
// body; the target connection of a rejected or doubtful response is closed, the client's
// connection after a doubtful one is not reused, and no exception escapes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestProxy, type TestProxy } from './helpers.ts';
import {
  type CorpusEntry,
  corpus,
  type Method,
  type Observation,
  observe,
  type RawTarget,
  describe as show,
  startRawTarget,
} from './response-corpus.ts';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) the proxy does not relay; the client sees its own
 * connection's instead. Headers a target names in `Connection` may be dropped too, or relayed.
 */
export const hopByHop: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

const controlBody = 'control-ok';
const deadlineMs = 5000;

/** The end-to-end headers of a raw header list, as [name, value] pairs in order. */
function endToEnd(raw: readonly string[], alsoDrop: ReadonlySet<string>): string[][] {
  const pairs: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (hopByHop.has(name) || alsoDrop.has(name)) continue;
    pairs.push([raw[i]!, raw[i + 1]!]);
  }
  return pairs;
}

/** Header names a response's `Connection` header lists (each may be relayed or dropped). */
function connectionNamed(raw: readonly string[]): Set<string> {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && name !== 'close' && name !== 'keep-alive') named.add(name);
    }
  }
  return named;
}

function hasHeader(raw: readonly string[] | undefined, name: string): boolean {
  for (let i = 0; i < (raw?.length ?? 0); i += 2) if (raw![i]!.toLowerCase() === name) return true;
  return false;
}

/** Why the target connection must be closed after this entry although llhttp accepted it. */
function doubtOf(entry: CorpusEntry, method: Method, oracle: Observation): string | undefined {
  if (entry.doubtful) return entry.doubtful;
  if (oracle.afterEnd) return `llhttp failed on the bytes after it: ${oracle.afterEnd}`;
  const end = entry.bytes.indexOf('\r\n\r\n');
  if (method === 'HEAD' && end !== -1 && end + 4 < entry.bytes.length)
    return 'bytes after a response to HEAD';
  return undefined;
}

/** Whether the llhttp failure is the connection closing before a head, rather than a parse error. */
function closedEarly(oracle: Observation): boolean {
  return /^(ECONNRESET|ERROR: closed without a response)/.test(oracle.error ?? '');
}

interface Verdict {
  problems: string[];
  /** The proxy refused the response (502/503) or cut it: the exchange was not a clean relay. */
  refused: boolean;
}

/**
 * The rule of issue 10, for one request: what llhttp rejects the proxy rejects; what llhttp accepts
 * the proxy relays exactly, except where the entry says RFC 9112 lets it reject instead.
 */
export function judge(entry: CorpusEntry, oracle: Observation, proxied: Observation): Verdict {
  const problems: string[] = [];
  const proxyError =
    proxied.outcome === 'complete' &&
    (proxied.status === 502 || (proxied.status === 503 && closedEarly(oracle)));
  if (proxied.outcome === 'hang' && oracle.outcome !== 'hang')
    problems.push(`the proxy's answer did not end within ${deadlineMs} ms`);
  switch (oracle.outcome) {
    case 'complete': {
      if (proxyError && entry.stricter) break; // allowed: RFC 9112 lets a recipient reject it
      if (proxied.outcome !== 'complete') {
        problems.push(`llhttp accepted it, but the proxy's answer was ${proxied.outcome}`);
        break;
      }
      if (proxied.status !== oracle.status) {
        problems.push(`status ${proxied.status} through the proxy, ${oracle.status} from llhttp`);
        break;
      }
      if (!proxied.body.equals(oracle.body))
        problems.push(
          `body of ${proxied.body.length} bytes through the proxy, ${oracle.body.length} from llhttp`,
        );
      const named = connectionNamed(oracle.rawHeaders!);
      const expected = endToEnd(oracle.rawHeaders!, named);
      // The proxy's own server adds a Date when the target sent none.
      const added = new Set(named);
      if (!hasHeader(oracle.rawHeaders, 'date')) added.add('date');
      const relayed = endToEnd(proxied.rawHeaders!, added);
      if (JSON.stringify(relayed) !== JSON.stringify(expected))
        problems.push(`headers differ: proxy ${JSON.stringify(relayed)}, llhttp ${JSON.stringify(expected)}`);
      break;
    }
    case 'rejected':
    case 'upgrade': {
      if (proxyError) break;
      problems.push(
        `llhttp ${oracle.outcome === 'upgrade' ? 'switched protocols' : 'rejected it'}, but the proxy answered ` +
          `${proxied.outcome} ${proxied.status ?? ''} (expected 502${closedEarly(oracle) ? ' or 503' : ''})`,
      );
      break;
    }
    case 'incomplete': {
      // llhttp accepted the head, so the proxy may have committed to it: then the client's
      // connection is cut, before or after the head reached it.
      if (proxyError || proxied.outcome === 'rejected') break;
      if (proxied.outcome !== 'incomplete') {
        problems.push(
          `llhttp failed in the body, but the proxy's answer was ${proxied.outcome} ${proxied.status ?? ''} ` +
            '(expected a 502 or a cut response)',
        );
        break;
      }
      // (The body bytes are not compared: node drops what its stream still buffered when it fails.)
      if (proxied.status !== oracle.status)
        problems.push(`status ${proxied.status} through the proxy, ${oracle.status} from llhttp`);
      break;
    }
    case 'hang':
      break; // llhttp waits for ever too; the proxy may wait or give up
  }
  return { problems, refused: proxied.outcome !== 'complete' || proxyError };
}

describe('differential: target responses through the proxy against node:http (llhttp)', () => {
  let proxy: TestProxy;
  let direct: RawTarget;
  let behind: RawTarget;
  let control: Server;
  const failures: string[] = [];
  const thrown: unknown[] = [];
  const onUncaught = (error: unknown) => thrown.push(error);
  const answer = (index: number) => ({ writes: [corpus[index]!.bytes], after: corpus[index]!.after });

  before(async () => {
    process.on('uncaughtException', onUncaught);
    direct = await startRawTarget(answer);
    behind = await startRawTarget(answer);
    control = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(controlBody);
    });
    control.listen(0, '127.0.0.1');
    await once(control, 'listening');
    proxy = await startTestProxy();
    await proxy.addRoute('/e', behind.url);
    await proxy.addRoute('/control', `http://127.0.0.1:${(control.address() as { port: number }).port}`);
  });

  after(async () => {
    process.off('uncaughtException', onUncaught);
    await proxy.close();
    await direct.close();
    await behind.close();
    control.closeAllConnections();
    control.close();
    if (failures.length > 0)
      process.stderr.write(`\n${failures.length} corpus requests differ:\n  ${failures.join('\n  ')}\n`);
  });

  test(`the corpus holds at least 250 responses with unique names (${corpus.length})`, () => {
    assert.ok(corpus.length >= 250);
    assert.equal(new Set(corpus.map((entry) => entry.name)).size, corpus.length);
  });

  corpus.forEach((entry, index) => {
    test(`${entry.name}: the proxy accepts, relays and rejects as llhttp does`, async () => {
      const problems: string[] = [];
      const report: string[] = [];
      for (const method of entry.methods) {
        const url = `/e/${index}`;
        const oracle = await observe(`${direct.url}${url}`, { method, agent: false, deadlineMs: 2000 });
        direct.dropAll();

        const thrownBefore = thrown.length;
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        try {
          const proxied = await observe(`${proxy.url}${url}`, { method, agent, deadlineMs });
          const next = await observe(`${proxy.url}/control`, { method: 'GET', agent, deadlineMs });
          const verdict = judge(entry, oracle, proxied);
          const mine = verdict.problems.map((problem) => `${method}: ${problem}`);

          // The next request on the client's connection gets its own answer, nothing of the target's;
          // after a doubtful response (accepted, but with something wrong around it) the proxy closed
          // that connection. After its own 502 it may keep it: that answer is framed by the proxy.
          const doubt = doubtOf(entry, method, oracle);
          if (next.outcome !== 'complete' || next.status !== 200 || next.body.toString() !== controlBody)
            mine.push(`${method}: the next request on that client connection got ${show(next)}`);
          else if (doubt && next.reusedSocket)
            mine.push(
              `${method}: the client's keep-alive connection was reused after a doubtful response (${doubt})`,
            );

          // The target connection of a rejected, doubtful or closing response is closed.
          if (verdict.refused || oracle.outcome !== 'complete' || doubt || entry.after === 'close') {
            const closed = await waitFor('the target connection to close', () => behind.open === 0, {
              timeoutMs: 3000,
            }).catch(() => false);
            if (!closed)
              mine.push(
                `${method}: the proxy kept ${behind.open} connection(s) to the target open after a ` +
                  `${doubt ? `doubtful response (${doubt})` : verdict.refused ? 'rejected response' : 'closing response'}`,
              );
          }
          if (thrown.length > thrownBefore)
            mine.push(`${method}: an exception escaped: ${String(thrown.slice(thrownBefore).join('; '))}`);
          if (mine.length > 0) {
            problems.push(...mine);
            report.push(`${method} via llhttp: ${show(oracle)}`, `${method} via proxy: ${show(proxied)}`);
          }
        } finally {
          agent.destroy();
          behind.dropAll();
          await waitFor('the target to have no connection left', () => behind.open === 0);
        }
      }
      if (problems.length > 0) failures.push(`${entry.name}: ${problems[0]}`);
      assert.deepEqual(problems, [], `${entry.name}\n  ${problems.join('\n  ')}\n  ${report.join('\n  ')}`);
    });
  });
});
