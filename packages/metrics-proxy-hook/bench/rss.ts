// Idle and peak resident memory of the sidecar process: an application serving a metrics body of
// --body-mb megabytes, scraped by --concurrency clients at once for --rounds rounds. Peak is the
// kernel's high-water mark (VmHWM), so no sample can miss it. After `npm run build`:
//   npm run bench -w @seahorse/metrics-proxy-hook -- [--body-mb=20] [--node-options="..."]
// (--node-options defaults to what the webhook injects; --node-options= measures without).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { sidecarNodeOptions } from '../src/pod-patch.ts';

export interface RssOptions {
  bodyBytes: number;
  concurrency: number;
  rounds: number;
  /** NODE_OPTIONS for the sidecar process, as the webhook injects them. */
  nodeOptions: string;
  maxCachedBody: string;
}

export interface RssResult {
  idleMiB: number;
  peakMiB: number;
  afterMiB: number;
}

/** Starts an application and a sidecar process, scrapes, and reads the sidecar's memory. */
export async function measureSidecarRss(options: RssOptions): Promise<RssResult> {
  const line = 'app_metric{label="some-value-of-a-realistic-length"} 12345.678\n';
  const body = Buffer.from(
    line.repeat(Math.ceil(options.bodyBytes / line.length)).slice(0, options.bodyBytes),
  );
  const app = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    // Written in 64 KiB pieces, as a metrics library streams its exposition.
    for (let offset = 0; offset < body.length; offset += 65536)
      res.write(body.subarray(offset, offset + 65536));
    res.end();
  });
  app.listen(0, '127.0.0.1');
  await new Promise((resolve) => app.once('listening', resolve));
  const appPort = (app.address() as AddressInfo).port;

  // The built bin, as the image runs it (the TypeScript sources would add the type stripper's heap).
  const cli = fileURLToPath(new URL('../bin/seahorse-metrics-proxy-hook.js', import.meta.url));
  const port = await freePort();
  const sidecar = new ManagedProcess(
    'sidecar',
    process.execPath,
    [
      cli,
      'sidecar',
      `http://127.0.0.1:${appPort}/metrics`,
      `--address=127.0.0.1:${port}`,
      `--max-cached-body=${options.maxCachedBody}`,
      '--log-level=warn',
    ],
    { env: { ...process.env, NODE_OPTIONS: options.nodeOptions } },
  );
  const status = (field: 'VmRSS' | 'VmHWM'): number => {
    const text = readFileSync(`/proc/${sidecar.pid}/status`, 'utf8');
    const kb = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
    return Math.round((kb / 1024) * 10) / 10;
  };
  try {
    await sidecar.untilReady(
      waitFor('sidecar', async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/`, { method: 'HEAD' })).status > 0;
        } catch {
          return false;
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleMiB = status('VmRSS');
    for (let round = 0; round < options.rounds; round++) {
      await Promise.all(
        Array.from({ length: options.concurrency }, async () => {
          const res = await fetch(`http://127.0.0.1:${port}/metrics`);
          const got = (await res.arrayBuffer()).byteLength;
          if (got !== body.length) throw new Error(`short body: ${got} of ${body.length} bytes`);
        }),
      );
    }
    return { idleMiB, peakMiB: status('VmHWM'), afterMiB: status('VmRSS') };
  } finally {
    await sidecar.stop();
    app.close();
    app.closeAllConnections();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      'body-mb': { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '2' },
      rounds: { type: 'string', default: '5' },
      'node-options': { type: 'string', default: sidecarNodeOptions },
      'max-cached-body': { type: 'string', default: '32Mi' },
    },
  });
  const result = await measureSidecarRss({
    bodyBytes: Number(values['body-mb']) * 1_000_000,
    concurrency: Number(values.concurrency),
    rounds: Number(values.rounds),
    nodeOptions: values['node-options'],
    maxCachedBody: values['max-cached-body'],
  });
  process.stdout.write(
    `${JSON.stringify({ nodeOptions: values['node-options'] || '(none)', bodyMB: Number(values['body-mb']), concurrency: Number(values.concurrency), ...result })}\n`,
  );
}
