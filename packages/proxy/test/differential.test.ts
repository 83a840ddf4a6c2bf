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
  judge,
  type Method,
  type Observation,
  observe,
  type RawTarget,
  describe as show,
  startRawTarget,
} from './response-corpus.ts';

const controlBody = 'control-ok';
const deadlineMs = 5000;
/**
 * Whether the client's keep-alive connection must be closed after a doubtful response (one
 * llhttp accepted with bytes after it, or a body where none may be). The proxy passes this
 * reliably only by answering `Connection: close` in the relayed head, so it must know of the
 * doubt before it writes the head; every doubtful corpus entry arrives in one segment. Without it,
 * the next request on that connection must still get exactly its own answer.
 */
const closeClientAfterDoubt = true;

/** Why the target connection must be closed after this entry although llhttp accepted it. */
function doubtOf(entry: CorpusEntry, method: Method, oracle: Observation): string | undefined {
  if (entry.doubtful) return entry.doubtful;
  if (oracle.afterEnd) return `llhttp failed on the bytes after it: ${oracle.afterEnd}`;
  const end = entry.bytes.indexOf('\r\n\r\n');
  if (method === 'HEAD' && end !== -1 && end + 4 < entry.bytes.length)
    return 'bytes after a response to HEAD';
  return undefined;
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
        const oracle = await observe(`${direct.url}${url}`, { method, agent: false, deadlineMs });
        direct.dropAll();

        const thrownBefore = thrown.length;
        const logsBefore = proxy.logs.lines.length;
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
          else if (closeClientAfterDoubt && doubt && next.reusedSocket)
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
          // A refused response is logged with its reason: a warning with a stable error code.
          const logged = () =>
            proxy.logs.lines
              .slice(logsBefore)
              .some(
                (line) => ['warn', 'error'].includes(line.level as string) && typeof line.code === 'string',
              );
          if (
            verdict.errorAnswer &&
            !(await waitFor('the log line', logged, { timeoutMs: 2000 }).catch(() => false))
          )
            mine.push(
              `${method}: the proxy answered ${proxied.status} without a warning naming the error code`,
            );
          if (thrown.length > thrownBefore)
            mine.push(`${method}: an exception escaped: ${String(thrown.slice(thrownBefore).join('; '))}`);
          if (mine.length > 0) {
            problems.push(...mine);
            report.push(
              `${method} via llhttp: ${show(oracle)}`,
              `${method} via proxy: ${show(proxied)}`,
              ...proxy.logs.lines
                .slice(logsBefore)
                .filter((line) => line.level === 'warn' || line.level === 'error')
                .map((line) => `${method} proxy log: ${JSON.stringify(line)}`),
            );
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
